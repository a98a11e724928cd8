"""Device and precision policy shared by training, inference and the app (imports no training code).

bf16 autocast is chosen automatically only where it is native (CUDA, or a CPU with AVX512-BF16/AMX): without
native bf16 it is slower than fp32. Measured speeds are in docs/benchmarks.md, not here.
"""
from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "bf16")
BACKENDS = ("auto", "torch", "winograd", "onnxruntime")


def resolve_device(name: str) -> torch.device:
    """"auto" is CUDA when present, else the CPU; cpu, cuda and cuda:N must exist here, else a one-line ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: no CUDA GPU is available here; use --device cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ValueError(f"--device {name}: only cpu and cuda are supported")
    return device


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions natively (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast is native on `device`: the "auto" choice of training and inference."""
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())


def use_bf16(setting: str, device: torch.device) -> bool:
    """A precision setting ("bf16", "auto", or fp32 as "fp32"/"off") resolved for `device`."""
    return setting == "bf16" or (setting == "auto" and native_bf16(device))


def memory_format(setting: str, bf16: bool, device: torch.device) -> torch.memory_format:
    """Channels-last for "on", and for "auto" with bf16 on a CPU (where oneDNN prefers it). Not on CUDA: with
    instance norm and reflection padding, layout copies made a compiled 256 px step 16 % slower on an H200
    (docs/benchmarks.md)."""
    auto = setting == "auto" and bf16 and device.type == "cpu"
    return torch.channels_last if setting == "on" or auto else torch.contiguous_format


def train_winograd(setting: str, bf16: bool, device: torch.device) -> bool:
    """Winograd convolutions in training for "on", and for "auto" on a CPU in fp32 (with bf16 autocast, or on
    CUDA, the library's convolutions are faster)."""
    return setting == "on" or (setting == "auto" and device.type == "cpu" and not bf16)


def pick_backend(backend: str, device: torch.device, precision: str) -> str:
    """The inference engine for "auto": PyTorch on CUDA and wherever bf16 is asked for or native; on other CPUs
    fp32 PyTorch with Winograd convolutions (winograd.py), the fastest fp32 engine measured on them."""
    if backend != "auto":
        return backend
    return "torch" if device.type != "cpu" or use_bf16(precision, device) else "winograd"


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on `device` when enabled, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def add_runtime_flags(parser) -> None:
    """--device, --precision and --backend, shared by `translate apply` and the app."""
    parser.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="bf16 autocast (auto: on CUDA and on CPUs with native bf16; see docs/benchmarks.md "
                             "for measured speeds)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="auto: torch on CUDA and bf16 CPUs, else winograd (fp32 PyTorch with Winograd "
                             "convolutions); onnxruntime: fp32 ONNX Runtime on the CPU (exports each direction "
                             "first, ~10 s). Measured speeds: docs/benchmarks.md")
