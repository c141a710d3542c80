"""The run record agrees with itself: 1-based epochs, every launch kept, a finished run
extended on request, and failed starts leave no folder."""

import csv
import json
import subprocess
import sys

import pytest

from layerkit.commands.train import default_run_dir
from layerkit.training import RunError, apply_overrides, get_recipe, train

OVERRIDES = ["train_limit=64", "test_limit=32", "batch_size=32", "report=false", "warmup_epochs=0"]


def test_resume_with_epochs_extends_a_finished_run_and_every_launch_is_kept(tmp_path, capfd):
    out = tmp_path / "run"
    train(apply_overrides(get_recipe("sample", smoke_run=True), ["epochs=1", *OVERRIDES]), out, verbose=0)
    with pytest.raises(RunError, match=r"finished all 1 epochs.*resume=True, epochs=N\)") as err:
        train(None, out, resume=True, verbose=0)
    assert "--resume" not in str(err.value) and "--resume --out" in err.value.cli and "--epochs N" in err.value.cli
    with pytest.raises(RunError, match="already trained 1 epochs"):
        train(None, out, resume=True, verbose=0, epochs=1)
    results = train(None, out, resume=True, verbose=0, epochs=2)
    assert "re-planned over 2 epochs" in capfd.readouterr().err
    assert results["epochs"] == 2
    assert json.loads((out / "config.json").read_text())["epochs"] == 2
    with open(out / "history.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2]
    launches = json.loads((out / "run.json").read_text())["launches"]
    assert [launch["epochs_completed_before"] for launch in launches] == [0, 1]
    assert all("argv" in launch and "time" in launch for launch in launches)


@pytest.mark.parametrize("args", [["--data", "no/such/folder"], ["model_options.nonsense=1"]])
def test_a_failed_start_leaves_no_folder(tmp_path, args):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "layerkit.cli", "train", "--smoke", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_runs_are_named_after_the_data_with_the_default_recipe_else_after_the_recipe():
    assert default_run_dir(None, "sample", "sample", False).startswith("runs/sample-2")
    assert default_run_dir(None, "/home/me/pets/", "sample", False).startswith("runs/pets-2")
    assert default_run_dir("sample", "/home/me/pets/", "sample", False).startswith("runs/sample-pets-2")
    assert default_run_dir("cnn-flowers", "my data", "flowers", True).startswith("runs/cnn-flowers-my_data-smoke-2")


def test_a_run_without_validation_writes_no_validation_columns(tmp_path):
    out = tmp_path / "run"
    train(apply_overrides(get_recipe("sample", smoke_run=True), ["epochs=1", "validation=0", *OVERRIDES]),
          out, verbose=0)
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and not [k for k in rows[0] if k.startswith("val_")]
    assert "NA" not in rows[0].values()
