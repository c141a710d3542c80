"""`layerkit speedrun cifar10 --smoke`: the whole speed run, seconds-long, through the CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "layerkit.cli", "speedrun", "cifar10", *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"})


def test_smoke_speedrun_reports_runs_accuracy_and_times(tmp_path):
    out = tmp_path / "speedrun.json"
    proc = run_cli("--smoke", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(out.read_text())
    runs = summary["runs"]
    assert len(runs) == 2 and summary["train_images"] == 512 and summary["test_images"] == 256
    accs = [r["test_accuracy"] for r in runs]
    assert all(0 <= a <= 1 and a * 256 == round(a * 256) for a in accs)  # whole images counted
    assert summary["test_accuracy_mean"] == pytest.approx(np.mean(accs))
    assert summary["test_accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    assert all(np.isfinite(r["final_loss"]) and r["seconds"] > 0 for r in runs)
    assert summary["compile_seconds"] > 0 and summary["config"]["precision"] == "bf16"
    assert summary["preset"] == "short" and summary["config"]["optimizer"] == "muon"
    assert "compilation" in proc.stdout and "(2 runs)" in proc.stdout
    assert runs[0]["final_loss"] != runs[1]["final_loss"]  # each run starts from new weights


def test_bad_flags_print_one_line_not_a_traceback():
    proc = run_cli("--smoke", "--widths", "8,x,16")
    assert proc.returncode == 2 and "--widths takes three integers" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli("--smoke", "--optimizer", "adam")
    assert proc.returncode == 2 and "optimizer must be one of ('muon', 'sgd'). Received: optimizer='adam'" in proc.stderr
