"""Kill a real `layerkit train` with SIGKILL at every stage of a checkpoint write, at a random
moment mid-epoch and during the resume itself; resume each time; the final state must equal
the uninterrupted run's exactly (CPU)."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time

import keras
import numpy as np

from layerkit.saving import load_model
from layerkit.training import apply_overrides, get_recipe, train
from layerkit.training.checkpoints import FAULT_ENV, STAGES, read_state

from tests.conftest import tensorboard_scalars

EPOCHS = 5
OVERRIDES = [f"epochs={EPOCHS}", "train_limit=256", "test_limit=64", "batch_size=32", "report=false",
             "warmup_epochs=1"]

# (fault, epochs committed after the kill): each stage of the write, killed in turn,
# and a kill during a resume (after the restore, before training goes on).
CHAIN = [
    ("kill@saving:1", 0),     # mid-write of the first checkpoint: nothing committed
    ("kill@saved:1", 0),      # file in place, manifest not yet replaced
    ("kill@committed:1", 1),  # manifest replaced, last.keras/best.keras not yet pointed at it
    ("kill@resumed:1", 1),    # the resume itself
    ("kill@published:2", 2),  # links updated, the previous epoch's file not yet deleted
    ("random", None),         # a random moment in the epoch after the third
]


def _weights(path):
    model = load_model(path)
    return [keras.ops.convert_to_numpy(v) for v in model.variables] + [
        keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]


def _done(out):
    state = read_state(out)  # never half-written: the manifest is renamed into place
    return state["epochs_completed"] if state else 0


def _start(out, resume, fault=""):
    cmd = [sys.executable, "-m", "layerkit.cli", "train", "--out", str(out)]
    cmd += ["--resume"] if resume else ["--smoke", *OVERRIDES]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", FAULT_ENV: fault}
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def test_stages_cover_the_write():
    assert {f.split("@")[1].split(":")[0] for f, _ in CHAIN if "@" in f} >= set(STAGES)


def test_sigkill_anywhere_then_resume_equals_uninterrupted(tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    config = apply_overrides(get_recipe("sample", smoke_run=True), OVERRIDES)
    train(config, whole, verbose=0)

    for i, (fault, expected) in enumerate(CHAIN):
        if fault == "random":
            proc = _start(killed, resume=True)
            deadline = time.time() + 600
            while _done(killed) < 3 and proc.poll() is None and time.time() < deadline:
                time.sleep(0.02)
            time.sleep(random.Random(0).uniform(0.0, 0.4))
            proc.send_signal(signal.SIGKILL)
        else:
            proc = _start(killed, resume=i > 0, fault=fault)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == -signal.SIGKILL, (fault, err.decode()[-2000:])
        if expected is not None:
            assert _done(killed) == expected, fault
        else:
            assert 3 <= _done(killed) < EPOCHS, "the random kill landed after the run"

    results = train(None, killed, resume=True, verbose=0)
    assert results["epochs"] == EPOCHS
    with open(killed / "history.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(1, EPOCHS + 1))  # none lost or repeated
    # TensorBoard shows each epoch once: a killed epoch's point is dropped when the resume logs it again
    tb_whole, tb_killed = tensorboard_scalars(whole / "tensorboard"), tensorboard_scalars(killed / "tensorboard")
    assert [s for s, _ in tb_killed["loss"]] == list(range(1, EPOCHS + 1))
    assert tb_killed["loss"] == tb_whole["loss"]  # the resumed run is the uninterrupted one, bit for bit
    for a, b in zip(_weights(whole / "last.keras"), _weights(killed / "last.keras"), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_weights(whole / "best.keras"), _weights(killed / "best.keras"), strict=True):
        np.testing.assert_array_equal(a, b)
    assert json.loads((whole / "results.json").read_text())["test_accuracy_final"] == results["test_accuracy_final"]
    # nothing a killed writer left behind survives the resumes
    state = read_state(killed)
    kept = sorted(p.name for p in (killed / "checkpoints").iterdir())
    assert kept == sorted({state["last"].split("/")[1], state["best"].split("/")[1]})
    assert not [p for p in killed.rglob("*") if ".tmp" in p.name]
