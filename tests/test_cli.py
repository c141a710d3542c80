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
    (["train", "--smoke", "--devices", "0"], "--devices must be an int >= 1. Received: 0"),
    (["train", "--smoke", "--num-processes", "0"], "--num-processes must be an int >= 1. Received: 0"),
    (["train", "--smoke", "--runs", "0"], "--runs must be an int >= 1. Received: 0"),
    (["train", "--smoke", "--batch-size", "-8"], "--batch-size must be an int >= 0 (0 = fitted to the data). Received: -8"),
    (["train", "--smoke", "train_limit=-1"], "'train_limit' must be an int >= 0 (0 = all). Received: -1"),
    (["train", "--smoke", "lr=inf"], "'lr' must be a finite number > 0. Received: inf"),
    (["train", "--smoke", "checkpoint_every=10parsecs"],
     "'checkpoint_every' must be a number of steps >= 1 (50) or a time > 0 with a unit s, min or h (30s, 10min, "
     "1.5h); \"\" or 0 = off (epoch checkpoints only). Received: '10parsecs'"),
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


def test_a_fresh_start_into_a_folder_of_other_files_is_refused_and_touches_nothing(tmp_path, capsys):
    out = tmp_path / "D"  # the probe's reproduction: the start also fails (no such data)
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "notes.txt").write_text("x")
    (out / "best.keras").write_text("y")
    before = sorted((p.relative_to(out), p.read_bytes() if p.is_file() else None) for p in out.rglob("*"))
    done = subprocess.run([*LAYERKIT, "train", "--smoke", "--data", str(tmp_path / "nonexistent"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert f"{out} is not empty (best.keras, checkpoints)" in done.stderr
    assert "choose another --out" in done.stderr and "Traceback" not in done.stderr
    assert len([line for line in done.stderr.splitlines() if "error" in line]) == 1, done.stderr
    assert sorted((p.relative_to(out), p.read_bytes() if p.is_file() else None) for p in out.rglob("*")) == before
    assert not (out / ".lock").exists()

    file_out = tmp_path / "a-file"  # --out naming a file: one clear line, the file untouched
    file_out.write_text("mine")
    assert main(["train", "--smoke", "--out", str(file_out)]) == 2
    assert f"{file_out} is a file; a run needs a folder: choose another --out" in capsys.readouterr().err
    assert file_out.read_text() == "mine"
