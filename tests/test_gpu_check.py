"""benchmarks/gpu_check.sh runs end to end on the CPU (its CUDA steps at toy sizes), so a typo in it cannot wait
for the day a GPU is lent."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(900)  # ~1 min alone; several on a shared 2-core machine
def test_gpu_check_runs_every_step_on_the_cpu(tmp_path):
    env = {**os.environ, "GPU_CHECK_CPU": "1", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all steps passed" in done.stdout
    for step in ("cuda-tests", "speed", "torchrun"):
        assert (tmp_path / f"{step}.log").is_file()
    assert "skipped" in (tmp_path / "cuda-tests.log").read_text()  # no GPU here: the CUDA tests skip
    docs = (tmp_path / "benchmarks.md").read_text()
    assert "| 32 px baseline | 1 |" in docs and "| 32 px | fast (" in docs
    assert (tmp_path / "runs" / "dp-smoke" / "model.safetensors").is_file()  # torchrun trained and exported
