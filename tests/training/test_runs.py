"""`layerkit train --runs N`: N seeds, each a full run record, mean ± spread, compilation apart."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from layerkit.training.runs import compile_seconds


def test_compile_time_is_the_first_epochs_extra_time():
    assert compile_seconds([12.0, 3.0, 2.0, 4.0]) == pytest.approx(9.0)
    assert compile_seconds([2.0, 3.0]) == 0.0  # never negative
    assert compile_seconds([5.0]) is None


def test_runs_report_mean_and_spread_through_the_cli(tmp_path):
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "layerkit.cli", "train", "--recipe", "speedrun-94-sgd", "--smoke", "--runs", "2",
           "--out", str(out), "epochs=2", "train_limit=96", "test_limit=32", "report=false",
           "model_options.widths=[8,16,16]", "precision=fp32"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    runs = summary["runs"]
    assert [r["seed"] for r in runs] == [0, 1] and summary["accuracy"] == "test_accuracy_final_tta"
    for r in runs:  # each run leaves the record of any run
        assert {"config.json", "run.json", "history.csv", "results.json", "state.json"} <= {
            p.name for p in (out / f"seed-{r['seed']}").iterdir()}
        assert r["compile_seconds"] is not None and r["train_seconds"] > 0
    accs = [r["test_accuracy"] for r in runs]
    assert summary["test_accuracy_mean"] == pytest.approx(np.mean(accs))
    assert summary["test_accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    assert "2 runs of airbench94 on sample: test accuracy" in proc.stdout and "compilation" in proc.stdout


def test_runs_and_resume_do_not_mix(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "layerkit.cli", "train", "--resume", "--runs", "2", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "KERAS_BACKEND": "jax"})
    assert proc.returncode == 2 and "--runs trains new runs" in proc.stderr
