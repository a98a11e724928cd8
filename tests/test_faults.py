"""Training survives faults: NaN, failed saves, signals, SIGKILL at random moments; the fast path and
data-parallel runs compute what the eager single-process path computes."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from translate.checkpoint import SaveError, load_state
from translate.cli import main
from translate.trainer import NonFiniteError, Trainer


def _poison_after(trainer, step):
    """Make G_ab's weights NaN once the run passes `step` (as an exploding update would)."""
    original, done = trainer.step, []

    def step_fn(a, b):
        out = original(a, b)
        if trainer.step_count == step and not done:
            done.append(step)
            with torch.no_grad():
                trainer.g_ab[1].weight.fill_(float("nan"))
        return out
    trainer.step = step_fn


def test_nan_rolls_back_to_last_good_state_at_half_the_lr(toy_root, tmp_path):
    trainer = Trainer(tiny_config(data=str(toy_root), max_steps=12, save_every=4, log_every=2,
                                  lr_decay_start=1.0), tmp_path / "run")
    _poison_after(trainer, 6)
    metrics = trainer.fit()
    assert trainer.step_count == 12 and trainer.weights_finite()
    assert metrics["lr_g"] == pytest.approx(1e-4)  # halved from 2e-4
    assert load_state(trainer.state_path)["step"] == 12


def test_nan_with_on_nan_stop_never_saves_a_poisoned_state(toy_root, tmp_path):
    trainer = Trainer(tiny_config(data=str(toy_root), max_steps=12, save_every=4, log_every=3, on_nan="stop"),
                      tmp_path / "run")
    _poison_after(trainer, 7)  # poisoned at 7, save due at 8, log due at 9: the save must refuse
    with pytest.raises(NonFiniteError, match="stopped"):
        trainer.fit()
    state = load_state(trainer.state_path)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["nets"]["g_ab"].values())


def _disk_full_for_state(monkeypatch, fail_on):
    """Make the n-th writes of the resume state fail as a full disk would: after the temporary file is written,
    at its fsync."""
    import translate.checkpoint as checkpoint
    real, writes = checkpoint.atomic_write, []

    def no_space(fd):
        raise OSError(28, "No space left on device")

    def atomic_write(path, data):
        if Path(path).name == "last.pt":
            writes.append(path)
            if len(writes) in fail_on:
                with monkeypatch.context() as m:
                    m.setattr(checkpoint.os, "fsync", no_space)
                    return real(path, data)
        return real(path, data)
    monkeypatch.setattr(checkpoint, "atomic_write", atomic_write)


def test_failed_save_keeps_the_previous_checkpoint(toy_root, tmp_path, monkeypatch, capsys):
    args = ["train", "--data", str(toy_root), "--runs-dir", str(tmp_path), "--name", "full", "--ngf", "8",
            "--n-blocks", "1", "--ndf", "8", "--load-size", "32", "--crop-size", "32", "--workers", "0",
            "--max-steps", "6", "--save-every", "3", "--device", "cpu"]
    _disk_full_for_state(monkeypatch, fail_on={2})
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "previous checkpoint is intact" in err
    assert load_state(tmp_path / "full" / "state" / "last.pt")["step"] == 3
    assert not [p for p in (tmp_path / "full" / "state").iterdir() if p.name != "last.pt"]  # no temp files left


def test_failed_save_is_retried_when_configured(toy_root, tmp_path, monkeypatch, capsys):
    import translate.trainer as trainer_module
    _disk_full_for_state(monkeypatch, fail_on={1})
    monkeypatch.setattr(trainer_module, "SAVE_RETRY_WAIT_S", 0)
    trainer = Trainer(tiny_config(data=str(toy_root), max_steps=2, save_retries=1), tmp_path / "run")
    trainer.fit()
    retry = [line for line in capsys.readouterr().err.splitlines() if "retrying" in line]
    assert len(retry) == 1 and retry[0].startswith("could not save the checkpoint")  # one plain line
    assert "No space left on device" in retry[0] and retry[0].endswith("retrying in 0 s")
    assert load_state(trainer.state_path)["step"] == 2


def test_fast_path_matches_eager_fp32_within_bf16_tolerance(toy_root, tmp_path):
    batch = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    results = []
    for amp, layout in (("off", "off"), ("bf16", "on")):
        trainer = Trainer(tiny_config(data=str(toy_root), amp=amp, channels_last=layout), tmp_path / amp)
        results.append({k: float(v) for k, v in trainer.step(*batch).items()})
    eager, fast = results
    for key in ("g_adv", "g_cycle", "g_identity", "d_a", "d_b"):
        assert fast[key] == pytest.approx(eager[key], rel=0.05, abs=0.02), key


def _train_cmd(toy_root, runs, name, steps, extra=()):
    return [sys.executable, "-m", "translate", "train", "--data", str(toy_root), "--runs-dir", str(runs),
            "--name", name, "--ngf", "8", "--n-blocks", "1", "--ndf", "8", "--n-layers", "2", "--load-size", "32",
            "--crop-size", "32", "--workers", "0", "--batch-size", "2", "--max-steps", str(steps),
            "--save-every", "2", "--log-every", "2", "--pool-size", "4", "--device", "cpu", "--amp", "off", *extra]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}


def test_sigterm_saves_at_a_step_boundary_and_exits_cleanly(toy_root, tmp_path):
    proc = subprocess.Popen(_train_cmd(toy_root, tmp_path, "run", 400), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    step = load_state(tmp_path / "run" / "state" / "last.pt")["step"]
    assert 4 <= step < 400
    assert f"SIGTERM: saving state at step {step}" in out and "translate train --resume" in out


def _last_logged(metrics: Path) -> dict:
    """The last complete line of a metrics.jsonl being written ({} before the first)."""
    lines = metrics.read_text().split("\n")[:-1] if metrics.exists() else []
    return json.loads(lines[-1]) if lines else {}


def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(toy_root, tmp_path):
    """Killed three times at random points (during steps, during checkpoint writes), each kill landing while the
    run trains (within a step time after a randomly chosen step), resumed each time: the final weights equal a
    straight run's, bit for bit, and the state on disk always loads."""
    steps = 24
    subprocess.run(_train_cmd(toy_root, tmp_path, "straight", steps), env=_env(), check=True,
                   capture_output=True)
    rng = random.Random(0)
    cmd = _train_cmd(toy_root, tmp_path, "killed", steps, ("--log-every", "1"))
    state, metrics = tmp_path / "killed" / "state" / "last.pt", tmp_path / "killed" / "metrics.jsonl"
    killed_at = []
    for target in (rng.randint(3, 6), rng.randint(10, 13), rng.randint(17, 20)):  # past the last run's log
        proc = subprocess.Popen(cmd + (["--resume"] if state.exists() else []), env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while _last_logged(metrics).get("step", 0) < target and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, _last_logged(metrics)["step_time_s"]))  # in a step or a checkpoint write
        assert proc.poll() is None, "the run ended before the kill: it must land mid-run"
        proc.kill()
        assert proc.wait() == -signal.SIGKILL
        killed_at.append(load_state(state)["step"])  # always a complete checkpoint, which loads
    assert all(step % 2 == 0 for step in killed_at) and 0 < killed_at[0] <= killed_at[-1] < steps
    subprocess.run(cmd + ["--resume"], env=_env(), check=True, capture_output=True)
    final, straight = load_state(state), load_state(tmp_path / "straight" / "state" / "last.pt")
    assert final["step"] == straight["step"] == steps
    for net in ("g_ab", "g_ba", "d_a", "d_b"):
        for key, value in straight["nets"][net].items():
            assert torch.equal(final["nets"][net][key], value), (net, key)


def test_data_parallel_with_gloo_matches_one_process_at_equal_global_batch(toy_root, tmp_path):
    common = ["--lr-decay-start", "1", "--pool-size", "0", "--adversarial", "lsgan"]
    single = _train_cmd(toy_root, tmp_path, "single", 4, common)
    single[single.index("--batch-size") + 1] = "4"
    subprocess.run(single, env=_env(), check=True, capture_output=True)
    ddp = _train_cmd(toy_root, tmp_path, "ddp", 4, common)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    run = subprocess.run(launcher + ddp[1:], env=_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    a = load_state(tmp_path / "single" / "state" / "last.pt")
    b = load_state(tmp_path / "ddp" / "state" / "last.pt")
    assert a["step"] == b["step"] == 4
    # Weights agree up to float summation order. Conv biases in front of instance norm are left out: their true
    # gradient is zero, so Adam turns float noise in it into +-lr steps in either run.
    for net in ("g_ab", "g_ba", "d_a", "d_b"):
        for key, value in a["nets"][net].items():
            if key.endswith("weight"):
                torch.testing.assert_close(b["nets"][net][key], value, rtol=1e-3, atol=1e-4)
    assert "images_per_s" in (tmp_path / "ddp" / "metrics.jsonl").read_text()
