"""The command line: it lists its commands and turns bad input into one clear line."""

import subprocess
import sys
from pathlib import Path

import pytest

from layerkit.cli import COMMANDS, main

# The installed `layerkit` script beside this Python, else `python -m layerkit.cli`.
_SCRIPT = Path(sys.executable).with_name("layerkit")
LAYERKIT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "layerkit.cli"]


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("argv, message", [
    (["train", "--recipe", "nope"], "Valid recipes:"),
    (["train", "--smoke", "lrr=0.1"], "Unknown config key 'lrr'. Valid keys:"),
    (["train", "--smoke", "epochs=many"], "'epochs' must be an int >= 1. Received: 'many'"),
    (["train", "--resume"], "--resume needs --out DIR"),
    (["models", "resnet-33"], "Received: depth=33"),
    (["models", "vgg19"], "Unknown model 'vgg19'. Valid names:"),
    (["models", "wrn-40-2", "--input-shape", "32x32"], "--input-shape must look like 32x32x3"),
])
def test_bad_input_is_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_recipes_lists_recipes_and_keys(capsys):
    assert main(["recipes"]) == 0
    assert "wrn-40-2-cifar10" in capsys.readouterr().out
    assert main(["recipes", "--keys"]) == 0
    assert "label_smoothing" in capsys.readouterr().out


def test_models_summary(capsys):
    assert main(["models", "wrn-16-1", "--input-shape", "8x8x3"]) == 0
    assert "group0 (WideResidualGroup)" in capsys.readouterr().out


# --- start-up: parsing (and --help) imports neither Keras nor JAX ---

HELP_ARGVS = [[]] + [[c] for c in COMMANDS] + [["records", "write"], ["bench", "pipeline"], ["data", "download"]]


def test_help_imports_neither_keras_nor_jax():
    code = (
        "import sys\nfrom layerkit.cli import main\n"
        f"for argv in {HELP_ARGVS!r}:\n"
        "    try:\n        main(argv + ['--help'])\n    except SystemExit as e:\n        assert e.code == 0, argv\n"
        "print('heavy:', sorted(m for m in ('keras', 'jax', 'jaxlib', 'matplotlib') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("heavy: []")


def test_help_runs_as_a_command():  # a hang guard; the time itself is measured by bench/cli_startup.py
    done = subprocess.run([*LAYERKIT, "--help"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "export" in done.stdout


def test_models_lists_the_zoo_from_the_table():
    from layerkit import models

    done = subprocess.run([*LAYERKIT, "models"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:-1]}
    assert sorted(rows) == models.names()
    assert rows["wrn-40-2"][1:4] == ["wrn-{depth}-{width}", "32x32x3", "2,248,954"]
