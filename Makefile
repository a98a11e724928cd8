# Two set-up commands: `make demo` and `make test`. Both create .venv from the pinned requirements.txt if missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test clean chromium

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/translate train --data datasets/emoji-style --name demo-emoji-style --load-size 64 \
		--crop-size 64 --no-crop --ngf 32 --ndf 32 --n-blocks 6 --batch-size 4 --max-steps 300 \
		--sample-every 100 --log-every 20 --save-every 100
	@echo "sample grids: runs/demo-emoji-style/samples/"

test: $(STAMP) chromium
	$(PY) -m pytest -q

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser of its own).
chromium:
	test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

clean:
	rm -rf runs .pytest_cache
