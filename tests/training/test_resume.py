"""Kill a real `layerkit train` with SIGKILL mid-run, resume it, and get the uninterrupted result."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import keras

from layerkit.training import apply_overrides, get_recipe, train
from layerkit.training.run import load_checkpoint

OVERRIDES = ["epochs=4", "train_limit=320", "test_limit=64", "batch_size=32", "report=false",
             "warmup_epochs=1"]


def _weights(path):
    model = load_checkpoint(path)
    return [keras.ops.convert_to_numpy(v) for v in model.variables] + [
        keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]


def _epochs_completed(out):
    try:
        return json.loads((out / "state.json").read_text())["epochs_completed"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    config = apply_overrides(get_recipe("sample", smoke_run=True), OVERRIDES)
    train(config, whole, verbose=0)

    cmd = [sys.executable, "-m", "layerkit.cli", "train", "--smoke", "--out", str(killed), *OVERRIDES]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.time() + 300
    while _epochs_completed(killed) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)  # into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    done = _epochs_completed(killed)
    assert 1 <= done < 4, f"the kill landed after {done} epochs"

    results = train(None, killed, resume=True, verbose=0)
    assert results["epochs"] == 4
    with open(killed / "history.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2, 3]  # no repeated or lost epoch
    for a, b in zip(_weights(whole / "last.keras"), _weights(killed / "last.keras"), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    assert json.loads((whole / "results.json").read_text())["test_accuracy_final"] == results["test_accuracy_final"]
