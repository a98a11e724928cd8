"""`translate import-cyclegan`: generators saved by the reference PyTorch CycleGAN (junyanz/pytorch-CycleGAN-and-
pix2pix, `latest_net_G_A.pth` / `latest_net_G_B.pth`) to one model artifact.

    translate import-cyclegan latest_net_G_A.pth latest_net_G_B.pth --out horse2zebra.safetensors \
        --domains horse zebra

Supported: the reference ResnetGenerator (`resnet_6blocks`, `resnet_9blocks`, any ngf, instance or batch norm,
with or without dropout), saved plain or from DataParallel (`module.` keys). Files are loaded weights-only: a
pickle that would run code is refused, never executed. G_A (A -> B) becomes our g_ab, G_B our g_ba.
"""
from __future__ import annotations

import argparse
import dataclasses
import pickle
import re
from pathlib import Path

LEGACY_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def add_parser(sub) -> None:
    p = sub.add_parser("import-cyclegan", help="convert reference CycleGAN generators (.pth) to a model artifact",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter, description=__doc__.split("\n\n")[0])
    p.add_argument("g_a", help="the A -> B generator (latest_net_G_A.pth)")
    p.add_argument("g_b", help="the B -> A generator (latest_net_G_B.pth)")
    p.add_argument("--out", required=True, help="model artifact to write (.safetensors)")
    p.add_argument("--domains", nargs=2, default=("A", "B"), metavar=("A", "B"), help="names of the two domains")
    p.add_argument("--image-size", type=int, default=256, help="image size the model was trained at (metadata)")
    p.set_defaults(func=cmd_import)


def load_weights(path: str | Path) -> dict:
    """A state dict from a .pth file, unpickled weights-only; DataParallel's `module.` prefix removed."""
    import torch
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise ValueError(f"{path}: refused: the file holds Python objects that would run code when loaded "
                             f"({found.group(1)}); only plain weights are accepted") from None
        raise ValueError(f"{path}: not a readable PyTorch checkpoint (corrupt or not a weights file)") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def convert_generator(state: dict, path: str | Path = "generator"):
    """(ModelConfig, state dict for our ResnetGenerator) from a reference ResnetGenerator state dict."""
    from .config import ModelConfig
    if any(k.startswith("model.model.") for k in state):
        raise ValueError(f"{path}: a reference U-Net generator; only the ResNet generators (resnet_6blocks, "
                         "resnet_9blocks) can be imported")
    if "model.1.weight" not in state:
        raise ValueError(f"{path}: not a reference CycleGAN ResnetGenerator (no model.1.weight; keys start with "
                         f"{', '.join(sorted(state)[:3])})")
    batch_norm = "model.2.weight" in state
    if not batch_norm:  # instance-norm running stats saved by PyTorch < 0.4: unused, and they would shift indices
        state = {k: v for k, v in state.items() if not k.endswith(LEGACY_BUFFERS)}
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
    # A block is [pad, conv, norm, relu, (dropout), pad, conv, norm]: its second conv (the second 4-D weight) sits at
    # index 6 with dropout and 5 without.
    second_convs = {int(m.group(1)) for k, v in state.items()
                    if v.ndim == 4 and (m := re.match(r"model\.\d+\.conv_block\.(\d+)\.weight$", k))} - {1}
    if len(second_convs) != 1 or not second_convs <= {5, 6}:
        raise ValueError(f"{path}: unexpected residual block layout (second conv at index "
                         f"{sorted(second_convs) or 'none'}; the reference has 5, or 6 with dropout)")
    stem, last = state["model.1.weight"], state.get(f"model.{17 + len(blocks)}.weight")
    if last is None or last.shape[0] != stem.shape[1]:
        raise ValueError(f"{path}: unexpected layout (output layer model.{17 + len(blocks)} missing, or its channels "
                         "differ from the input's)")
    model = ModelConfig(generator="resnet", ngf=stem.shape[0], n_blocks=len(blocks), channels=stem.shape[1],
                        g_norm="batch" if batch_norm else "instance", upsample="transpose",
                        dropout=0.5 if second_convs == {6} else 0.0)
    return model, {k.removeprefix("model.").replace(".conv_block.", ".body."): v for k, v in state.items()}


def convert(g_a: str | Path, g_b: str | Path, out: str | Path, domains=("A", "B"), image_size: int = 256) -> dict:
    """Write both reference generators as one artifact; returns its metadata."""
    from .checkpoint import export_model
    from .inference import first_problem
    from .nets import build_generator
    for path in (g_a, g_b):
        if Path(path).resolve() == Path(out).resolve():
            raise ValueError(f"--out {out} is one of the input files: it would be overwritten; choose another name")
    nets, models = {}, []
    for name, path in (("g_ab", g_a), ("g_ba", g_b)):
        model, state = convert_generator(load_weights(path), path)
        net = build_generator(model)
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"{path}: weights do not fit a reference ResnetGenerator ({first_problem(exc)})") \
                from None
        nets[name] = net
        models.append(model)
    if models[0] != models[1]:
        raise ValueError(f"{g_a} and {g_b} have different architectures: {models[0]} vs {models[1]}")
    meta = {"model": dataclasses.asdict(models[0]), "image_size": image_size, "domains": list(domains),
            "recipe": "cyclegan", "steps": None,
            "source": f"reference CycleGAN (pytorch-CycleGAN-and-pix2pix): {Path(g_a).name}, {Path(g_b).name}"}
    export_model(out, nets, meta)
    return meta


def cmd_import(args: argparse.Namespace) -> int:
    meta = convert(args.g_a, args.g_b, args.out, args.domains, args.image_size)
    m = meta["model"]
    print(f"wrote {args.out}: ResNet-{m['n_blocks']} ngf {m['ngf']} {m['g_norm']} norm, "
          f"{args.domains[0]} -> {args.domains[1]} (a2b) and back (b2a)")
    return 0
