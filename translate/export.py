"""`translate export MODEL --onnx OUT.onnx` or `--out OUT.safetensors`: deployable copies of a model.

--onnx: one direction of a model as ONNX, any height and width. The graph takes `image`, float32 N x C x H x W in [-1, 1], and returns `translated` of the same shape; padding to
the net's multiple and cropping back are inside it. H and W must be at least 8 (ResNet) or 2**depth (U-Net).
The file's metadata holds the direction, the domain names and the model config. After writing, the export is
checked: onnxruntime and PyTorch must agree on a test image.

--out: a release copy of the safetensors model, optionally with fp16 weights (half the size), new domain names
and a `task` for the app (style | expression).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

TOLERANCE = 1e-4


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a model to ONNX (dynamic height and width)",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter, description=__doc__.split("\n")[0])
    p.add_argument("model", help="exported model (model.safetensors)")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--onnx", metavar="OUT.onnx", help="ONNX file to write")
    out.add_argument("--out", metavar="OUT.safetensors", help="release copy of the model to write")
    p.add_argument("--direction", choices=("a2b", "b2a"), default="a2b", help="ONNX: the direction to export")
    p.add_argument("--fp16", action="store_true", help="--out: store the weights as float16")
    p.add_argument("--domains", nargs=2, metavar=("A", "B"), help="--out: names of the two domains")
    p.add_argument("--task", help="--out: the app tab that serves it (style | expression)")
    p.set_defaults(func=cmd_export)


def export_onnx(translator, direction: str, path: str | Path) -> None:
    """Write the padded generator of `direction` as ONNX with dynamic batch, height and width."""
    import onnx
    import torch
    net, least = translator.net(direction), translator.min_size
    channels = translator.meta["model"].get("channels", 3)
    example = torch.zeros(2, channels, least + 1, least + 3, device=translator.device)  # a size that needs padding
    dims = torch.export.Dim
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net, (example,), dynamo=True, input_names=["image"], output_names=["translated"], verbose=False,
            dynamic_shapes=({0: dims("batch"), 2: dims("height", min=least), 3: dims("width", min=least)},))
    model = program.model_proto
    domains = translator.domains if direction == "a2b" else translator.domains[::-1]
    for key, value in {"direction": direction, "source_domain": domains[0], "target_domain": domains[1],
                       "input_range": "[-1, 1]", "model": json.dumps(translator.meta["model"])}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    from .checkpoint import atomic_write
    atomic_write(path, model.SerializeToString())  # a full disk leaves no half-written file


def onnx_difference(path: str | Path, translator, direction: str, height: int, width: int) -> float:
    """Max |onnxruntime - PyTorch| on a random image of the given size."""
    import onnxruntime as ort
    import torch
    channels = translator.meta["model"].get("channels", 3)
    x = torch.rand(1, channels, height, width, generator=torch.Generator().manual_seed(0)) * 2 - 1
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})[0]
    want = translator.translate_tensor(x, direction).cpu().numpy()
    if got.shape != want.shape:
        raise ValueError(f"{path}: ONNX output shape {got.shape} differs from PyTorch's {want.shape}")
    return float(abs(got - want).max())


def export_release(model: str | Path, out: str | Path, fp16: bool = False, domains: list[str] | None = None,
                   task: str | None = None) -> None:
    """Copy a model artifact with fp16 weights and/or new metadata (domain names, app task)."""
    from .checkpoint import read_model, write_model
    nets, meta = read_model(model)
    meta.update({k: v for k, v in (("domains", domains), ("task", task)) if v})
    if fp16:
        nets = {name: {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
                for name, state in nets.items()}
    write_model(out, nets, meta)


def cmd_export(args: argparse.Namespace) -> int:
    from .inference import Translator
    if args.out:
        export_release(args.model, args.out, args.fp16, args.domains, args.task)
        print(f"wrote {args.out}" + (" (fp16 weights)" if args.fp16 else ""))
        return 0
    translator = Translator.from_file(args.model, device="cpu")
    export_onnx(translator, args.direction, args.onnx)
    m = translator.multiple
    diff = onnx_difference(args.onnx, translator, args.direction, -(-32 // m) * m + 3, -(-48 // m) * m + 1)
    if not diff <= TOLERANCE:  # NaN compares false both ways
        reason = ("the outputs are not finite (NaN or infinity): the model does not work" if diff != diff
                  else f"onnxruntime differs from PyTorch by {diff:.2e} (over {TOLERANCE:g})")
        print(f"{args.onnx}: {reason}", file=sys.stderr)
        return 1
    print(f"wrote {args.onnx} ({args.direction}); onnxruntime matches PyTorch (max |diff| {diff:.1e})")
    return 0
