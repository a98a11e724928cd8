"""The `translate` command: train (and the subcommands other modules add)."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from . import STARTED, __version__
from .checkpoint import SaveError
from .config import Config, add_config_flags
from .recipes import DEFAULT_RECIPE, RECIPES, recipe_config

USER_ERRORS = (ValueError, FileNotFoundError)  # DataError and ArtifactError are ValueErrors
RUN_ERRORS = (SaveError, FloatingPointError)  # a failed checkpoint write, a run that went non-finite
# Modules that add a subcommand: each has `add_parser(subparsers)` and sets `func` on its parser.
# They import their heavy dependencies inside the command, so `translate --help` stays fast.
SUBCOMMAND_MODULES: tuple[str, ...] = ("translate.dataset_tools", "translate.apply", "translate.export",
                                         "translate.reference", "translate.evaluate", "translate.recipes")


def _help_recipe(argv: list[str]) -> tuple[str, bool]:
    """The --model (recipe) and --paper-nets of a command line, so `train --model dualgan --help` shows dualgan's
    defaults; unknown recipes fall back to the default here and are reported by the real parse."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model", "--recipe", dest="recipe", default=DEFAULT_RECIPE)
    pre.add_argument("--paper-nets", action="store_true")
    known, _ = pre.parse_known_args(argv)
    return (known.recipe if known.recipe in RECIPES else DEFAULT_RECIPE), known.paper_nets


def _train_parser(sub, argv: list[str]) -> None:
    recipe, paper_nets = _help_recipe(argv)
    p = sub.add_parser("train", help="train a CycleGAN / DiscoGAN / DualGAN on two image folders",
                       description=f"Defaults shown are those of --model {recipe}"
                                   f"{' --paper-nets' if paper_nets else ''} ({RECIPES[recipe]['paper']}); "
                                   "`translate train --model NAME --help` shows another recipe's, "
                                   "`translate recipes` compares them.")
    p.add_argument("--resume", action="store_true", help="continue the run RUNS_DIR/NAME from its last state")
    p.add_argument("--paper-nets", action="store_true", help="use the recipe paper's own nets")
    p.add_argument("--minutes", type=float, help="time budget, start to exit: measure the speed over a short warm-up, "
                   "then set --max-steps to fit (start-up, warm-up and the final save count); overrides --epochs and "
                   "--max-steps")
    add_config_flags(p, recipe_config(recipe, paper_nets))
    p.set_defaults(func=cmd_train)


def train_config(args: argparse.Namespace) -> tuple[Config, Path, dict]:
    """The run's Config and folder, checked (translate.validate) before anything is written, and on --resume the
    changes to the saved config: recipe defaults, then the flags given; on --resume the saved config, then the
    flags given that run_folder.RESUMABLE allows (for example a larger --max-steps)."""
    from .run_folder import absolute_data, init_settings, refuse_existing, resume_changes
    from .validate import check_config
    overrides = {k: v for k, v in vars(args).items()
                 if k not in ("command", "func", "resume", "paper_nets", "minutes", "started")}
    changes: dict = {}
    if args.resume:
        if not overrides.get("name"):
            raise ValueError("--resume needs the --name of the run to continue")
        run_dir = Path(overrides.get("runs_dir", "runs")) / overrides["name"]
        if not (run_dir / "config.json").is_file():
            raise FileNotFoundError(f"{run_dir}: no run to resume (config.json missing)")
        cfg = Config.load(run_dir / "config.json")
        changes = resume_changes(cfg, overrides)
        cfg.update({key: new for key, (_, new) in changes.items()})
        cfg.train.name, cfg.train.runs_dir = run_dir.name, str(run_dir.parent)  # where it is now, not was
    else:
        cfg = recipe_config(overrides.pop("recipe", DEFAULT_RECIPE), args.paper_nets)
        cfg = cfg.update(init_settings(overrides)).update(overrides)
        absolute_data(cfg)
    if not cfg.train.name:
        source = cfg.data.data or cfg.data.data_b or "run"
        cfg.train.name = f"{Path(source).resolve().name}-{cfg.train.recipe}"
    check_config(cfg)
    run_dir = Path(cfg.train.runs_dir) / cfg.train.name
    if not args.resume:
        refuse_existing(run_dir)
    return cfg, run_dir, changes


def cmd_train(args: argparse.Namespace) -> int:
    from .run import samples_source
    from .trainer import Trainer
    if args.minutes is not None and not args.minutes > 0:
        raise ValueError(f"--minutes {args.minutes:g}: give a time budget above 0")
    from . import run_folder
    cfg, run_dir, changes = train_config(args)
    trainer = Trainer(cfg, run_dir)
    if args.resume:
        done = run_folder.saved_step(run_dir)
        if done is not None and done >= trainer.total_steps and args.minutes is None:
            print(f"{run_dir}: this run already finished ({done:,} of {trainer.total_steps:,} steps); nothing to do. "
                  f"To train longer: translate train --resume --name {cfg.train.name} --runs-dir {cfg.train.runs_dir} "
                  f"--max-steps {2 * trainer.total_steps}")
            return 0
        if done is not None:
            before = trainer._lr_factor(done, run_folder.previous_total(cfg, changes, trainer.batches().steps_per_epoch))
            changes["lr factor"] = (before, trainer._lr_factor(done))
        for line in run_folder.describe(changes):
            print(line)
    t, world = cfg.train, trainer.world
    steps = f"set from --minutes {args.minutes:g} after a warm-up" if args.minutes else f"{trainer.total_steps:,}"
    if world.is_main:
        print(f"run folder: {run_dir}  recipe: {t.recipe}  device: {trainer.device}  steps: {steps}  "
              f"images: {len(trainer.domains.train_a)} A, {len(trainer.domains.train_b)} B\n"
              f"global batch: {t.batch_size} x {world.world_size} process(es) = {t.batch_size * world.world_size}  "
              f"lr_g {t.lr_g:g}  lr_d {t.lr_d:g}  bf16: {trainer.amp}\n"
              f"sample grids: {samples_source(trainer)}")
    try:
        with run_folder.lock(run_dir):
            trainer.fit(resume=args.resume, minutes=args.minutes, started=args.started)
    except KeyboardInterrupt:
        if not trainer.state_path.is_file():
            print("stopped before the first checkpoint; nothing to resume: start again with the same command",
                  file=sys.stderr)
            return 130
        print(f"stopped; continue with: translate train --resume --name {cfg.train.name} "
              f"--runs-dir {cfg.train.runs_dir}", file=sys.stderr)
        return 130
    print(f"done: {run_dir / 'model.safetensors'}  samples: {run_dir / 'samples'}  report: {run_dir / 'report.html'}")
    return 0


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="translate", description="Unpaired image-to-image translation.")
    parser.add_argument("--version", action="version", version=f"translate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub, sys.argv[1:] if argv is None else argv)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


_first_command = True  # the first command of a process: its imports count toward a --minutes budget


def main(argv: list[str] | None = None) -> int:
    global _first_command
    started, _first_command = (STARTED if _first_command else time.perf_counter()), False
    args = build_parser(argv).parse_args(argv)
    args.started = started
    try:
        return args.func(args)
    except KeyboardInterrupt:  # Ctrl-C before training started (imports, data checks): nothing was written
        print(f"translate {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `translate data inspect --json | head`: the reader left; exit quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at interpreter exit
        return 141
    except USER_ERRORS as exc:
        print(f"translate {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RUN_ERRORS as exc:
        print(f"translate {args.command}: stopped: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, read-only folder...: writes are atomic, so nothing half-written is left
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"translate {args.command}: stopped: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
