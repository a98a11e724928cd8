"""Load test of the Gradio app: many concurrent gradio_client requests of mixed image sizes against `python app.py`
on 127.0.0.1 (never another host); prints JSON with latency percentiles and the server's memory.

    python benchmarks/load.py                          # a fresh demo-size model (ResNet-6, ngf 32), 50 requests
    python benchmarks/load.py --ngf 8 --n-blocks 1     # the test suite's tiny model (tests/test_load.py)
    python benchmarks/load.py --checkpoints checkpoints --model emoji-style.safetensors

All requests are submitted at once; a request's latency (successful ones only) runs from its submission to its
result, so it includes its time in the app's queue. Memory is the server's resident set (/proc/PID/status VmRSS)
after one warm-up request and after the load, and its peak (VmHWM). Numbers for docs/reliability.md.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SIZES = (16, 48, 128, 256, 384, 512)  # square sides, cycled over the requests
MODEL = "load-style.safetensors"


def make_checkpoints(folder: Path, ngf: int = 32, n_blocks: int = 6) -> Path:
    """A checkpoints folder holding one freshly initialised style model (speed does not depend on training)."""
    import torch
    from translate.checkpoint import export_model
    from translate.config import ModelConfig
    from translate.nets import build_generator
    model = ModelConfig(ngf=ngf, n_blocks=n_blocks)
    torch.manual_seed(0)
    nets = {name: build_generator(model).eval() for name in ("g_ab", "g_ba")}
    folder.mkdir(parents=True, exist_ok=True)
    export_model(folder / MODEL, nets, {"model": dataclasses.asdict(model), "image_size": 64, "task": "style",
                                        "domains": ["A", "B"], "recipe": "cyclegan", "steps": 0})
    return folder


def make_images(folder: Path, n: int, sizes=SIZES) -> list[Path]:
    """n random RGB PNGs, square, sides cycling through `sizes`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        side = sizes[i % len(sizes)]
        path = folder / f"load-{i:03d}-{side}px.png"
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_mb(pid: int) -> dict[str, float]:
    """The process's resident set now (VmRSS) and at its peak (VmHWM), in MB, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.rsplit(":", 1)
                if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                    raw = b"".join(bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, len(address), 8))
                    found.add(socket.inet_ntop(family, raw))  # the kernel writes each 32-bit word little-endian
    return found


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of sorted values."""
    return values[max(0, math.ceil(q / 100 * len(values)) - 1)]


@contextlib.contextmanager
def serve(checkpoints: Path, workdir: Path, timeout: float = 120, args: tuple[str, ...] = ("--no-train",)):
    """`python app.py --checkpoints CHECKPOINTS ARGS` as a user starts it (default host), on a free port; yields
    (url, port, process id) once it answers, and stops it afterwards. Its uploads go under `workdir`. ARGS default
    to --no-train, so that the app does not serve the models of the developer's runs/ folder."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(workdir / "gradio"),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    log = workdir / "app.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--checkpoints", str(checkpoints), "--port",
                                 str(port), "--device", "cpu", *args], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"app did not start within {timeout:.0f} s:\n{log.read_text()}") from None
                time.sleep(0.5)
        yield url, port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_load(url: str, images: list[Path], pid: int, model: str = MODEL, api_name: str = "/translate_style",
             timeout: float = 180, downloads: Path | None = None) -> dict:
    """Submit one request per image at once, wait at most `timeout` s for all; latencies, failures, memory."""
    from gradio_client import Client, handle_file
    client = Client(url, verbose=False, analytics_enabled=False, max_workers=len(images),
                    download_files=str(downloads or tempfile.mkdtemp(prefix="load-")))

    def request(path: Path):
        return client.submit(model, "a2b", handle_file(str(path)), 1.0, False, False, api_name=api_name)

    request(images[0]).result(timeout=timeout)  # warm-up: the first forward pass builds the kernels
    before = memory_mb(pid)
    start = time.perf_counter()
    futures, submitted, finished = [], [], {}
    for i, path in enumerate(images):
        submitted.append(time.perf_counter())
        future = request(path).future  # the Job wraps this Future; waits and callbacks go to it
        future.add_done_callback(lambda _, i=i: finished.setdefault(i, time.perf_counter()))
        futures.append(future)
    done, _ = concurrent.futures.wait(futures, timeout=timeout)
    wall = time.perf_counter() - start
    after = memory_mb(pid)
    failures = {}
    for future, path in zip(futures, images):
        if future not in done:
            failures[path.name] = f"no answer within {timeout:.0f} s"
            future.cancel()
        elif future.exception() is not None:
            failures[path.name] = str(future.exception())
        else:
            with Image.open(future.result()[0]) as out, Image.open(path) as src:
                if out.size != src.size:
                    failures[path.name] = f"output {out.size} for input {src.size}"
    latencies = sorted(finished[i] - submitted[i] for i, path in enumerate(images) if path.name not in failures)
    return {"requests": len(images), "succeeded": len(latencies), "failures": failures, "wall_s": round(wall, 2),
            "latency_s": {f"p{q}": round(percentile(latencies, q), 3) for q in (50, 95, 100)} if latencies else {},
            "throughput_per_s": round(len(latencies) / wall, 2),
            "server_rss_mb": {"before": round(before["VmRSS"], 1), "after": round(after["VmRSS"], 1),
                              "peak": round(after["VmHWM"], 1)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoints", type=Path, help="serve this folder (default: a fresh model, see --ngf)")
    parser.add_argument("--model", default=MODEL, help="model file name in the folder")
    parser.add_argument("--api-name", default="/translate_style", help="/translate_style or /translate_expression")
    parser.add_argument("--ngf", type=int, default=32, help="width of the fresh model")
    parser.add_argument("--n-blocks", type=int, default=6, help="residual blocks of the fresh model")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="square image sides, cycled")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for all requests together")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="translate-load-") as tmp:
        tmp = Path(tmp)
        checkpoints = args.checkpoints or make_checkpoints(tmp / "checkpoints", args.ngf, args.n_blocks)
        images = make_images(tmp / "images", args.requests, args.sizes)
        with serve(checkpoints, tmp / "server") as (url, port, pid):
            result = run_load(url, images, pid, args.model, args.api_name, args.timeout, tmp / "downloads")
            result["listening_on"] = sorted(listening_addresses(port))
    result["model"] = (f"{args.checkpoints / args.model}" if args.checkpoints
                       else f"fresh ResNet-{args.n_blocks}, ngf {args.ngf}")
    result["sizes_px"] = args.sizes
    result["cpu_threads"] = os.cpu_count()
    print(json.dumps(result, indent=2))
    return 0 if result["succeeded"] == result["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
