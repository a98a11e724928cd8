"""Speed: a reference-style CycleGAN loop against translate's fast path, measured in the same run.

Baseline: the loop of the reference PyTorch CycleGAN (`CycleGANModel.optimize_parameters`): eager fp32, batch 1,
one G step then one D step, ResNet-9 generators with transposed-conv upsampling, 70x70 PatchGANs, LSGAN, cycle
and identity L1, image pools. Fast path: `translate.trainer.Trainer` with its defaults for the device
(bf16 autocast and channels-last where the hardware has bf16, Winograd convolutions on a CPU in fp32,
torch.compile and fused Adam on CUDA) and a larger batch. Both run alternately, so a change in machine load hits
both alike.

    python benchmarks/speed.py                  # CPU: training at 64 and 128 px, inference at 256 and 1024 px
    python benchmarks/speed.py --sizes 64 128 256 --device cuda
Prints JSON and rewrites this device's section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import re
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from translate.config import ModelConfig  # noqa: E402
from translate.data import UnpairedBatches, UnpairedDataset, build_transform, collate, list_images  # noqa: E402
from translate.runtime import cpu_has_bf16, resolve_device  # noqa: E402
from translate.trainer import ImagePool, Trainer  # noqa: E402
from translate.inference import Translator  # noqa: E402
from translate.nets import build_discriminator, build_generator  # noqa: E402
from translate.recipes import recipe_config  # noqa: E402

DATA = ROOT / "datasets" / "emoji-style"
# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, for MFU.
NET: dict = {}  # --tiny: small nets, to check the script quickly (not for numbers)
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0}


class ReferenceLoop:
    """The reference CycleGAN training step, as its `optimize_parameters` does it."""

    def __init__(self, device: torch.device, lam: float = 10.0, lam_idt: float = 0.5):
        torch.manual_seed(0)
        net = ModelConfig(upsample="transpose", **NET)
        self.G_A, self.G_B = build_generator(net).to(device), build_generator(net).to(device)
        self.D_A, self.D_B = build_discriminator(net).to(device), build_discriminator(net).to(device)
        self.opt_G = torch.optim.Adam([*self.G_A.parameters(), *self.G_B.parameters()], 2e-4, betas=(0.5, 0.999))
        self.opt_D = torch.optim.Adam([*self.D_A.parameters(), *self.D_B.parameters()], 2e-4, betas=(0.5, 0.999))
        self.pool_A, self.pool_B = ImagePool(50), ImagePool(50)
        self.lam, self.lam_idt = lam, lam_idt

    @staticmethod
    def gan_loss(pred: torch.Tensor, real: bool) -> torch.Tensor:
        return F.mse_loss(pred, torch.full_like(pred, float(real)))

    def backward_D(self, D, real, fake) -> None:
        ((self.gan_loss(D(real), True) + self.gan_loss(D(fake.detach()), False)) * 0.5).backward()

    def step(self, real_A: torch.Tensor, real_B: torch.Tensor) -> None:
        fake_B = self.G_A(real_A)
        rec_A = self.G_B(fake_B)
        fake_A = self.G_B(real_B)
        rec_B = self.G_A(fake_A)
        for p in (*self.D_A.parameters(), *self.D_B.parameters()):
            p.requires_grad_(False)
        self.opt_G.zero_grad()
        idt = (F.l1_loss(self.G_A(real_B), real_B) + F.l1_loss(self.G_B(real_A), real_A)) * self.lam * self.lam_idt
        loss_G = (self.gan_loss(self.D_A(fake_B), True) + self.gan_loss(self.D_B(fake_A), True)
                  + (F.l1_loss(rec_A, real_A) + F.l1_loss(rec_B, real_B)) * self.lam + idt)
        loss_G.backward()
        self.opt_G.step()
        for p in (*self.D_A.parameters(), *self.D_B.parameters()):
            p.requires_grad_(True)
        self.opt_D.zero_grad()
        self.backward_D(self.D_A, real_B, self.pool_B.query(fake_B))
        self.backward_D(self.D_B, real_A, self.pool_A.query(fake_A))
        self.opt_D.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS


def _flops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def _alternate(runs: dict, repeats: int, device: torch.device) -> dict[str, float]:
    """Median seconds per call of each function, calling them in turn `repeats` times."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def training(size: int, batch: int, device: torch.device, repeats: int, warmup: int, batch1: bool = True) -> dict:
    images = lambda n: torch.rand(n, 3, size, size, device=device) * 2 - 1  # noqa: E731
    ref = ReferenceLoop(device)
    a1, b1 = images(1), images(1)
    cfg = recipe_config("cyclegan").update(dict(**NET, data=str(DATA), crop_size=size, load_size=size,
                                                batch_size=batch, device=str(device), workers=0))
    fast = Trainer(cfg, Path(tempfile.mkdtemp()) / "run")
    ab, bb = images(batch), images(batch)
    eager = Trainer(cfg.update({"compile": "off"}), Path(tempfile.mkdtemp()) / "run")  # counted, not compiled
    flops = {"baseline": _flops(lambda: ref.step(a1, b1)), "fast": _flops(lambda: eager.step(ab, bb)) / batch}
    del eager
    for _ in range(warmup):  # also compiles
        ref.step(a1, b1)
        fast.step(ab, bb)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = _alternate({"baseline": lambda: ref.step(a1, b1), "fast": lambda: fast.step(ab, bb)}, repeats, device)
    peak = peak_tflops(device)
    out = {}
    for name, n in (("baseline", 1), ("fast", batch)):
        ips = n / seconds[name]
        out[name] = {"batch": n, "images_per_s": round(ips, 3), "step_ms": round(seconds[name] * 1e3, 1),
                     "gflop_per_image": round(flops[name] / 1e9, 1),
                     "mfu": round(flops[name] * ips / (peak * 1e12), 4) if peak else None}
    out["fast"].update(amp=fast.amp, channels_last=fast.memory_format == torch.channels_last)
    if device.type == "cuda" and batch1:  # the fast path at the baseline's batch of 1
        one = Trainer(cfg.update({"batch_size": 1}), Path(tempfile.mkdtemp()) / "run")
        for _ in range(warmup):
            one.step(a1, b1)
        ms = _alternate({"fast_batch1": lambda: one.step(a1, b1)}, repeats, device)["fast_batch1"]
        out["fast_batch1"] = {"batch": 1, "images_per_s": round(1 / ms, 3), "step_ms": round(ms * 1e3, 1),
                              "speedup": round(seconds["baseline"] / ms, 2)}
    out["peak_memory_mb"] = round(_peak_memory_mb(device), 1)
    out["speedup"] = round(out["fast"]["images_per_s"] / out["baseline"]["images_per_s"], 2)
    return out


def best_batch(size: int, batches: list[int], device: torch.device, repeats: int, warmup: int) -> dict:
    """training() at each fast-path batch; the result of the one with the most images/s, with all of them."""
    runs = [training(size, b, device, repeats, warmup, batch1=i == 0) for i, b in enumerate(batches)]
    best = max(runs, key=lambda r: r["fast"]["images_per_s"])
    if "fast_batch1" in runs[0]:
        best["fast_batch1"] = runs[0]["fast_batch1"]
    best["fast_batches"] = {r["fast"]["batch"]: {"images_per_s": r["fast"]["images_per_s"], "speedup": r["speedup"]}
                            for r in runs}  # each against the baseline measured beside it
    return best


def inference(size: int, device: torch.device, repeats: int) -> dict:
    """Single-image translation: eager fp32 under no_grad (the reference test script) vs translate's Translator
    (bf16 autocast under inference_mode where the hardware has bf16); on CUDA also compiled, channels-last and
    batched throughput; on CPU also ONNX Runtime on the `translate export --onnx` graph."""
    torch.manual_seed(0)
    net = build_generator(ModelConfig(**NET)).to(device).eval()
    x = torch.rand(1, 3, size, size, device=device) * 2 - 1

    def baseline():
        with torch.no_grad():
            net(x)
    translator = Translator({"g_ab": net, "g_ba": net}, {"model": dataclasses.asdict(ModelConfig(**NET))}, device,
                            precision="bf16" if device.type == "cuda" or cpu_has_bf16() else "fp32", backend="auto")
    runs = {"baseline": baseline, "fast": lambda: translator.translate_tensor(x)}
    batch = 64
    if device.type == "cuda":
        fast_net = build_generator(ModelConfig(**NET)).to(device, memory_format=torch.channels_last).eval()
        fast_net = torch.compile(fast_net)
        xb = (torch.rand(batch, 3, size, size, device=device) * 2 - 1).to(memory_format=torch.channels_last)

        def batched():
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                fast_net(xb)
        runs["batched"] = batched
    else:
        import onnxruntime as ort
        path = Path(tempfile.mkdtemp()) / "g.onnx"
        torch.onnx.export(net, (x,), str(path), input_names=["image"], output_names=["out"],
                          dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}}, dynamo=False)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        runs["onnxruntime"] = lambda: session.run(None, {"image": x.numpy()})
    for fn in runs.values():  # warm-up, compile
        fn()
        fn()
    seconds = _alternate(runs, repeats, device)
    out = {k: {"images_per_s": round((batch if k == "batched" else 1) / v, 2), "latency_ms": round(v * 1e3, 1)}
           for k, v in seconds.items()}
    out["speedup"] = round(seconds["baseline"] / seconds["fast"], 2)
    with torch.no_grad():  # worst pixel difference from eager fp32, in grey levels of a 0-255 image
        diff = (translator.translate_tensor(x).float() - net(x)).abs().max().item() * 255 / 2
    out["fast"].update(backend=translator.backend, precision=translator.precision, max_diff_grey=round(diff, 3))
    return out


def data_pipeline(size: int, workers: int, batches: int = 20, batch: int = 8) -> dict:
    """Decode + augment + collate throughput of the training data path on the shipped emoji images."""
    files_a, files_b = list_images(DATA / "trainA"), list_images(DATA / "trainB")
    dataset = UnpairedDataset(files_a, files_b, build_transform(int(size * 1.12), size))
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=UnpairedBatches(len(files_a), len(files_b), batch,
                                                                                 0, stop=batches),
                                         collate_fn=collate, num_workers=workers)
    start = time.perf_counter()
    n = sum(len(b["a"]) + len(b["b"]) for b in loader)
    return {"workers": workers, "images_per_s": round(n / (time.perf_counter() - start), 1)}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"CPU {cpu}, {torch.get_num_threads()} threads"


def markdown(result: dict) -> str:
    lines = [f"### {result['device']}", "", f"torch {result['torch']}; command: `{result['command']}`", "",
             "| training | batch | images/s | step ms | GFLOP/image | MFU | peak memory MB | speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    for size, r in result["training"].items():
        for name in ("baseline", "fast"):
            x = r[name]
            mfu = f"{x['mfu']:.1%}" if x["mfu"] is not None else "n/a"
            lines.append(f"| {size} px {name} | {x['batch']} | {x['images_per_s']} | {x['step_ms']} | "
                         f"{x['gflop_per_image']} | {mfu} | {r['peak_memory_mb'] if name == 'fast' else ''} | "
                         f"{r['speedup'] if name == 'fast' else ''} |")
        if "fast_batch1" in r:
            x = r["fast_batch1"]
            lines.append(f"| {size} px fast | 1 | {x['images_per_s']} | {x['step_ms']} | | | | {x['speedup']} |")
        if len(r.get("fast_batches", {})) > 1:
            lines.append(f"| {size} px fast, images/s (speed-up) by batch | " + ", ".join(
                f"{b}: {x['images_per_s']} ({x['speedup']}x)" for b, x in r["fast_batches"].items()) + " | | | | | | |")
    lines += ["", "| inference | path | images/s | latency ms | speed-up |", "|---|---|---|---|---|"]
    for size, r in result["inference"].items():
        for name, x in r.items():
            if name != "speedup":
                path = f"fast ({x['backend']}, {x['precision']}; max diff {x['max_diff_grey']}/255)" \
                    if name == "fast" else name
                lines.append(f"| {size} px | {path} | {x['images_per_s']} | {x['latency_ms']} | "
                             f"{r['speedup'] if name == 'fast' else ''} |")
    if result["data"]:
        lines += ["", "| data pipeline | workers | images/s |", "|---|---|---|"]
        lines += [f"| {size} px | {r['workers']} | {r['images_per_s']} |" for size, r in result["data"].items()]
    return "\n".join(lines) + "\n"


def write_docs(result: dict, path: Path) -> None:
    """Replace (or add) this device's section of docs/benchmarks.md, keeping the others."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    section = markdown(result)
    pattern = re.compile(rf"^### {re.escape(result['device'])}\n.*?(?=^### |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="training sizes (px)")
    parser.add_argument("--inference-sizes", type=int, nargs="*", default=[256, 1024], help="none: skip inference")
    parser.add_argument("--batch", type=int, nargs="+", default=None,
                        help="fast-path batches, the best reported (default 4 on CPU, 8 on CUDA)")
    parser.add_argument("--no-data", action="store_true", help="skip the data-pipeline measurement")
    parser.add_argument("--tiny", action="store_true", help="ngf/ndf 8, one block: checks the script, no numbers")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    if args.tiny:
        NET.update(ngf=8, ndf=8, n_blocks=1)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    sizes = args.sizes or ([64, 128, 256] if cuda else [64, 128])
    repeats = args.repeats or (20 if cuda else 5)
    batches = args.batch or [8 if cuda else 4]
    result = {"device": device_name(device), "torch": torch.__version__,
              "command": "python benchmarks/speed.py " + " ".join(sys.argv[1:]),
              "training": {s: best_batch(s, batches, device, repeats, warmup=3 if cuda else 1) for s in sizes},
              "inference": {s: inference(s, device, repeats) for s in args.inference_sizes},
              "data": {} if args.no_data else {s: data_pipeline(s, workers=2) for s in (64, 256)}}
    print(json.dumps(result, indent=2))
    write_docs(result, args.docs)


if __name__ == "__main__":
    main()
