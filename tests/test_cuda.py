"""The CUDA fast path: torch.compile, bf16 autocast, fused Adam, NaN handling, inference. Skipped without a GPU;
benchmarks/gpu_check.sh runs them on one."""
import pytest
import torch

from conftest import tiny_config
from test_faults import _poison_after
from translate.trainer import NonFiniteError, Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def cuda_trainer(toy_root, tmp_path, **overrides) -> Trainer:
    return Trainer(tiny_config(data=str(toy_root), device="cuda", **{"amp": "auto", **overrides}), tmp_path / "run")


def batch(n: int = 4):
    g = torch.Generator().manual_seed(0)
    return [(torch.rand(n, 3, 32, 32, generator=g) * 2 - 1).cuda() for _ in range(2)]


def test_auto_fast_path_is_on_with_compile_bf16_fused_adam(toy_root, tmp_path):
    trainer = cuda_trainer(toy_root, tmp_path)
    assert trainer.amp and trainer.memory_format == torch.contiguous_format  # channels-last measured slower
    assert trainer.opt_g.defaults["fused"] and trainer.opt_d.defaults["fused"]
    assert all(getattr(net, "_compiled_call_impl", None) is not None
               for net in (trainer.g_ab, trainer.g_ba, trainer.d_a, trainer.d_b))
    before = [p.detach().clone() for p in trainer.params_g]
    for _ in range(3):
        losses = trainer.step(*batch())
    assert all(torch.isfinite(v).all() for v in losses.values())
    assert all(p.dtype == torch.float32 for p in trainer.params_g)  # master weights stay fp32 under autocast
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.params_g))


def test_bf16_step_tracks_the_fp32_step(toy_root, tmp_path):
    """One step from the same weights and batch: the generators' gradient under bf16 autocast points where the fp32
    one does. (Not Adam's update: its first step is about sign(gradient), which flips on tiny components.)"""
    grads = {}
    for amp in ("bf16", "off"):
        trainer = cuda_trainer(toy_root, tmp_path / amp, amp=amp, compile="off")
        trainer.step(*batch())
        grads[amp] = torch.cat([p.grad.flatten() for p in trainer.params_g])
    cosine = torch.nn.functional.cosine_similarity(grads["bf16"], grads["off"], dim=0)
    assert cosine > 0.9, f"bf16 gradient differs from fp32 (cosine {cosine:.3f})"


def test_nan_on_cuda_rolls_back_and_training_goes_on(toy_root, tmp_path):
    trainer = cuda_trainer(toy_root, tmp_path, max_steps=8, save_every=4, log_every=2, lr_decay_start=1.0)
    _poison_after(trainer, 5)
    metrics = trainer.fit()
    assert trainer.step_count == 8 and trainer.weights_finite()
    assert metrics["lr_g"] == pytest.approx(1e-4)  # halved from 2e-4 by the rollback


def test_nan_on_cuda_with_on_nan_stop_stops(toy_root, tmp_path):
    trainer = cuda_trainer(toy_root, tmp_path, max_steps=8, save_every=4, log_every=3, on_nan="stop")
    _poison_after(trainer, 5)
    with pytest.raises(NonFiniteError, match="stopped"):
        trainer.fit()


def test_translator_on_cuda_matches_the_cpu(tmp_path):
    from test_inference import make_model
    from translate.inference import Translator
    make_model(tmp_path / "model.safetensors")
    x = torch.rand(2, 3, 36, 44, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cpu = Translator.from_file(tmp_path / "model.safetensors", device="cpu", precision="fp32")
    gpu = Translator.from_file(tmp_path / "model.safetensors", device="cuda", precision="auto", backend="auto")
    assert gpu.backend == "torch" and gpu.precision == "bf16"
    assert (gpu.translate_tensor(x).cpu() - cpu.translate_tensor(x)).abs().max() < 0.05
