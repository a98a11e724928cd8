"""What a newcomer meets first: --version, recipe-aware help, `translate recipes`, data-tool messages, and every
`translate ...` command line in the README parsing as the CLI really is."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from translate import __version__
from translate.cli import build_parser, main as cli_main

ROOT = Path(__file__).resolve().parents[1]


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"translate {__version__}"


def _train_help(capsys, *args) -> str:
    with pytest.MonkeyPatch.context() as mp, pytest.raises(SystemExit):
        mp.setenv("COLUMNS", "10000")  # one line per flag: argparse wraps at the terminal width, and at hyphens
        cli_main(["train", *args, "--help"])
    return capsys.readouterr().out


def test_train_help_shows_the_chosen_recipes_defaults_and_hides_one_valued_flags(capsys):
    cyclegan = _train_help(capsys)
    dualgan = _train_help(capsys, "--model", "dualgan")
    assert "optimizer (default: adam)" in cyclegan and "optimizer (default: rmsprop)" in dualgan
    assert "cycle loss weight, per direction (default: 100.0)" in dualgan
    assert "Defaults shown are those of --model dualgan" in dualgan
    assert "generator net (default: unet)" in _train_help(capsys, "--model=dualgan", "--paper-nets")
    for flag in ("--channels",):
        assert not re.search(flag + r"(?![-\w])", cyclegan)  # --channels-last stays
    assert "--minutes" in cyclegan and "--keep-every" in cyclegan and "emoji-style-cyclegan" in cyclegan
    # hidden flags are still accepted (configs that set them keep working)
    args = build_parser(["train"]).parse_args(["train", "--data", "d", "--discriminator", "patchgan"])
    assert args.discriminator == "patchgan"


def test_recipes_table_shows_what_each_recipe_sets(capsys):
    assert cli_main(["recipes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    from translate.recipes import RECIPES, recipe_config
    assert lines[0].split() == ["flag", *RECIPES]
    rows = {line.split()[0]: dict(zip(RECIPES, line.split()[1:])) for line in lines[2:]
            if line.startswith("--") and "paper" not in line}
    for flag in ("--adversarial", "--lambda-cycle", "--optimizer"):
        assert rows[flag] == {name: str(getattr(recipe_config(name).train, flag[2:].replace("-", "_")))
                              for name in RECIPES}
    assert rows["--adversarial"]["cyclegan"] == "lsgan" and rows["--lambda-cycle"]["dualgan"] == "100.0"
    assert "--ngf" not in rows  # the same in every recipe: not a difference


def _readme_commands() -> list[list[str]]:
    """`translate ...` lines of the README's shell blocks, comments and continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("translate "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_every_readme_command_parses(capsys):
    commands = _readme_commands()
    assert len(commands) >= 20
    for argv in commands:
        try:
            build_parser(argv).parse_args(argv)
        except SystemExit as exc:
            if exc.code != 0:  # --help exits 0
                raise AssertionError(f"README command does not parse: translate {shlex.join(argv)}") from exc


def test_data_without_subcommand_names_them(capsys):
    assert cli_main(["data"]) == 2
    err = capsys.readouterr().err
    assert "translate data prepare FOLDER_A FOLDER_B --out ROOT" in err and "--overwrite" in err
    assert "translate data inspect ROOT" in err


def test_prepare_skips_hidden_folders_says_when_it_upscales_and_names_the_flag(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, n, size in ((a, 3, 12), (b, 3, 40)):
        folder.mkdir()
        for i in range(n):
            rng = np.random.default_rng(i + n * size)
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (a / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (40, 40)).save(a / ".ipynb_checkpoints" / "0-checkpoint.png")
    out = tmp_path / "out"
    assert cli_main(["data", "prepare", str(a), str(b), "--out", str(out), "--size", "32"]) == 0
    printed = capsys.readouterr().out
    assert "domain A: 3 found" in printed
    assert "skipped 1 image(s) in hidden folders" in printed
    assert "upscaled 3 image(s) smaller than --size 32" in printed  # A is 12 px; B (40 px) is not upscaled
    assert printed.count("upscaled") == 1
    assert cli_main(["data", "prepare", str(a), str(b), "--out", str(out)]) == 2
    assert "add --overwrite to replace it" in capsys.readouterr().err


def test_inspect_columns_stay_apart(tmp_path, capsys):
    for split, sizes in (("trainA", [(5000, 7), (6000, 9), (7001, 11), (13, 8001)]), ("trainB", [(32, 32)])):
        (tmp_path / split).mkdir()
        for i, size in enumerate(sizes):
            Image.new("L", size).save(tmp_path / split / f"{i}.png")
    assert cli_main(["data", "inspect", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = lines[0].index("modes")
    assert all(line[start - 2:start] == "  " for line in lines[:3])  # a gap before the modes column
    assert lines[1][start:].startswith("L (4)")


def test_inspect_json_into_a_closed_pipe_exits_quietly(tmp_path):
    for split in ("trainA", "trainB"):
        (tmp_path / split).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / split / "x.png")
    for i in range(1500):  # corrupt-file entries: JSON far larger than a pipe's buffer
        (tmp_path / "trainA" / f"empty-file-number-{i:05d}.png").write_bytes(b"")
    # `| head -1`: the reader closes the pipe after one line, long before the JSON is written
    done = subprocess.run(f"{shlex.quote(sys.executable)} -m translate data inspect {tmp_path} --json | head -1",
                          shell=True, capture_output=True, text=True, timeout=120)
    assert done.stdout == "{\n" and done.stderr == ""
