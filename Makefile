# The two set-up commands: `make demo` (the Gradio app with the shipped demo models) and `make test`.
# Both create .venv from the pinned requirements.txt if it is missing.
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
	$(PY) app.py --checkpoints checkpoints

test: $(STAMP) chromium
	$(PY) -m pytest -q

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads a browser of its own).
chromium:
	test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

clean:
	rm -rf runs .pytest_cache
