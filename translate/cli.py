"""The `translate` command: train (and the subcommands other modules add)."""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from .checkpoint import SaveError
from .config import Config, add_config_flags
from .recipes import RECIPES, recipe_config

USER_ERRORS = (ValueError, FileNotFoundError)  # DataError and ArtifactError are ValueErrors
RUN_ERRORS = (SaveError, FloatingPointError)  # a failed checkpoint write, a run that went non-finite
# Modules that add a subcommand: each has `add_parser(subparsers)` and sets `func` on its parser.
# They import their heavy dependencies inside the command, so `translate --help` stays fast.
SUBCOMMAND_MODULES: tuple[str, ...] = ("translate.dataset_tools", "translate.apply", "translate.export",
                                         "translate.reference", "translate.evaluate")


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a CycleGAN / DiscoGAN / DualGAN on two image folders",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Recipes: " + "; ".join(f"{k}: {v['paper']}" for k, v in RECIPES.items()))
    p.add_argument("--resume", action="store_true", help="continue the run RUNS_DIR/NAME from its last state")
    p.add_argument("--paper-nets", action="store_true", help="use the recipe paper's own nets")
    add_config_flags(p)
    p.set_defaults(func=cmd_train)


def train_config(args: argparse.Namespace) -> tuple[Config, Path]:
    """The run's Config and folder: recipe defaults, then the flags given; on --resume the saved config,
    then the flags given (for example a larger --max-steps)."""
    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "func", "resume", "paper_nets")}
    if args.resume:
        if not overrides.get("name"):
            raise ValueError("--resume needs the --name of the run to continue")
        run_dir = Path(overrides.get("runs_dir", "runs")) / overrides["name"]
        if not (run_dir / "config.json").is_file():
            raise FileNotFoundError(f"{run_dir}: no run to resume (config.json missing)")
        cfg = Config.load(run_dir / "config.json").update(overrides)
    else:
        cfg = recipe_config(overrides.pop("recipe", "cyclegan"), args.paper_nets).update(overrides)
    if not cfg.train.name:
        source = cfg.data.data or cfg.data.data_b or "run"
        cfg.train.name = f"{Path(source).resolve().name}-{cfg.train.recipe}"
    return cfg, Path(cfg.train.runs_dir) / cfg.train.name


def cmd_train(args: argparse.Namespace) -> int:
    from .trainer import Trainer
    cfg, run_dir = train_config(args)
    trainer = Trainer(cfg, run_dir)
    t, world = cfg.train, trainer.world
    if world.is_main:
        print(f"run folder: {run_dir}  recipe: {t.recipe}  device: {trainer.device}  steps: {trainer.total_steps}  "
              f"images: {len(trainer.domains.train_a)} A, {len(trainer.domains.train_b)} B\n"
              f"global batch: {t.batch_size} x {world.world_size} process(es) = {t.batch_size * world.world_size}  "
              f"lr_g {t.lr_g:g}  lr_d {t.lr_d:g}  bf16: {trainer.amp}")
    try:
        trainer.fit(resume=args.resume)
    except KeyboardInterrupt:
        print(f"stopped; continue with: translate train --resume --name {cfg.train.name} "
              f"--runs-dir {cfg.train.runs_dir}", file=sys.stderr)
        return 130
    print(f"done: {run_dir / 'model.safetensors'}  samples: {run_dir / 'samples'}  report: {run_dir / 'report.html'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="translate", description="Unpaired image-to-image translation.")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as exc:
        print(f"translate {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RUN_ERRORS as exc:
        print(f"translate {args.command}: stopped: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
