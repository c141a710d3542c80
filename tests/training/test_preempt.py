"""Step checkpoints and SIGTERM (preemption): a run stopped by SIGTERM at random steps in the
middle of epochs (during a step-checkpoint write and right after a resume too) and resumed each
time ends with the weights, optimizer state and history of the uninterrupted run, exactly (CPU);
the `checkpoint_every` policies, and bad values refused."""

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
import pytest

from layerkit.saving import load_model
from layerkit.training import Config, apply_overrides, get_recipe, train
from layerkit.training.checkpoints import FAULT_ENV, StepCheckpoints, read_state
from layerkit.training.stop import Preempted, StopSignals

from tests.conftest import tensorboard_scalars

EPOCHS, STEPS = 3, 8  # 256 training images, batch 32: 8 steps an epoch (checked below)
OVERRIDES = [f"epochs={EPOCHS}", "train_limit=256", "test_limit=64", "batch_size=32", "report=false",
             "warmup_epochs=1"]
TIMING = {"epoch_seconds", "images_per_sec"}  # the only columns that differ between two runs


def _weights(path):
    model = load_model(path)
    return [keras.ops.convert_to_numpy(v) for v in model.variables + model.optimizer.variables]


def _history(run):
    with open(run / "history.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def _train_with_fault(fault, *args, **kwargs):
    os.environ[FAULT_ENV] = fault
    try:
        return train(*args, verbose=0, **kwargs)
    finally:
        os.environ.pop(FAULT_ENV, None)


def test_sigterm_at_random_steps_then_resume_equals_uninterrupted(tmp_path):
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    config = apply_overrides(get_recipe("sample", smoke_run=True), OVERRIDES)
    train(config, whole, verbose=0)  # no step checkpoints: saving them must not change the run
    assert len(_history(whole)) == EPOCHS

    rng = random.Random(22)
    every = 3
    first = rng.randrange(2, STEPS - 1)  # a step in the middle of epoch 1
    results = _train_with_fault(f"term@step:{first}", apply_overrides(config, [f"checkpoint_every={every}"]),
                                stopped)
    state = read_state(stopped)
    assert results["preempted"] and state["epochs_completed"] == 0 and state["steps_per_epoch"] == STEPS
    assert state["step"] == first  # the fault waits until the signal is counted: it stops at that boundary
    assert (state["data_step"], state["data_end"]) == (state["step"], STEPS)  # the sampler's position, the epoch's end
    assert not (stopped / "history.csv").exists() or len(_history(stopped)) == 0
    assert state["last"] == f"checkpoints/step-{state['step']:08d}.keras"
    assert sorted(p.name for p in (stopped / "checkpoints").iterdir()) == [f"step-{state['step']:08d}.keras"]

    # SIGTERM while a step checkpoint is being written: that write completes and commits, the
    # run stops at the next boundary; the checkpoint before it is pruned, the epoch's kept
    at = state["step"] + 1
    write = next(g for g in range(at + 1, EPOCHS * STEPS) if g % every == 0 and g % STEPS not in (0, STEPS - 1))
    results = _train_with_fault(f"term@saving:step-{write}", None, stopped, resume=True)
    state = read_state(stopped)
    g = state["epochs_completed"] * STEPS + state["step"]
    assert results["preempted"] and g == write + 1, (g, write)  # the write was under way: the next boundary
    kept = sorted(p.name for p in (stopped / "checkpoints").iterdir())
    assert kept == sorted({f"step-{g:08d}.keras", *(n.split("/")[1] for n in (state["last_epoch"], state["best"])
                                                        if n)})

    # SIGTERM right after a resume: nothing new to save, the committed step stays
    results = _train_with_fault(f"term@resumed:{state['epochs_completed']}", None, stopped, resume=True)
    again = read_state(stopped)
    assert results["preempted"] and again == state  # the first boundary is the committed step: nothing saved

    # a random step of a later epoch
    done = again["epochs_completed"] * STEPS + again["step"]
    later = rng.randrange(max(done + 2, STEPS + 1), EPOCHS * STEPS - 1)
    if later % STEPS == 0:
        later += 1
    results = _train_with_fault(f"term@step:{later}", None, stopped, resume=True)
    state = read_state(stopped)
    assert results["preempted"] and state["epochs_completed"] * STEPS + state["step"] == later

    finished = train(None, stopped, resume=True, verbose=0)
    assert finished["epochs"] == EPOCHS
    assert _history(stopped) == _history(whole)  # each epoch once, its metrics those of the whole run
    loss = tensorboard_scalars(stopped / "tensorboard")["loss"]
    assert [s for s, _ in loss] == list(range(1, EPOCHS + 1)) and loss == tensorboard_scalars(whole / "tensorboard")["loss"]
    for name in ("last.keras", "best.keras"):
        for a, b in zip(_weights(whole / name), _weights(stopped / name), strict=True):
            np.testing.assert_array_equal(a, b)
    assert json.loads((whole / "results.json").read_text())["test_accuracy_final"] == finished["test_accuracy_final"]
    state = read_state(stopped)
    assert "step" not in state and sorted(p.name for p in (stopped / "checkpoints").iterdir()) == sorted(
        {state["last"].split("/")[1], state["best"].split("/")[1]})


def test_steps_per_epoch_below_a_pass_resumes_the_partial_epoch_exactly(tmp_path):
    """steps_per_epoch=3 over a pass of 8 batches: epochs run data steps 0-2, 3-5, ... A SIGTERM
    after step 1 of epoch 2 saves data step 4 and the epoch's end, 6 (not the pass's end); the
    resume runs steps 4-5 only and ends as the uninterrupted run. (Later epochs would keep the
    batch sequence, but Keras counts a fit's epochs from where it starts, so their boundaries
    within a pass shift after a resume: docs/pipeline.md.)"""
    config = apply_overrides(get_recipe("sample", smoke_run=True),
                             [*OVERRIDES, "epochs=2", "steps_per_epoch=3", "tta=none"])
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    train(config, whole, verbose=0)
    assert _train_with_fault("term@step:4", config, stopped)["preempted"]  # epoch 2, after its step 1
    state = read_state(stopped)
    assert (state["epochs_completed"], state["step"], state["data_step"], state["data_end"]) == (1, 1, 4, 6)
    train(None, stopped, resume=True, verbose=0)
    assert _history(stopped) == _history(whole)
    assert read_state(stopped)["data_step"] == read_state(whole)["data_step"] == 6
    for x, y in zip(_weights(whole / "last.keras"), _weights(stopped / "last.keras"), strict=True):
        np.testing.assert_array_equal(x, y)


def test_checkpoint_every_a_time_saves_between_steps_of_a_real_run(tmp_path):
    """checkpoint_every=1ms: a step checkpoint at every boundary; a SIGTERM sent while step 3's
    commits (so only a save there sends it) stops the run at the next boundary, saved."""
    config = apply_overrides(get_recipe("sample", smoke_run=True),
                             [*OVERRIDES, "epochs=1", "checkpoint_every=0.001s", "tta=none"])
    results = _train_with_fault("term@committed:step-3", config, tmp_path / "run")
    state = read_state(tmp_path / "run")
    assert results["preempted"] and (state["epochs_completed"], state["step"]) == (0, 4)  # the next boundary
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [f"step-{state['step']:08d}.keras"]


# === The policy between steps, on its own ===


class _Saves:
    """Records what `StepCheckpoints` asks `Checkpoints` to save."""

    def __init__(self):
        self.saved = []

    def save_step(self, epoch, step, steps_per_epoch, data_step, data_end):
        assert data_end == 2000
        self.saved.append((epoch, step, data_step))


class _Pipeline:
    epoch_end_step = 2000

    def epoch_step(self, batch):
        return 1000 + batch


class _Model:
    metrics_variables = []


def _policy(every, clock=None, signals=None):
    saves = _Saves()
    policy = StepCheckpoints(saves, every, 10, _Pipeline(), signals, **({"clock": clock} if clock else {}))
    policy.set_model(_Model())
    policy.restore(None)
    return policy, saves


def _epoch(policy, epoch, steps=10, skip=0):
    policy.begin_fit(skip)
    policy.on_epoch_begin(epoch)
    for batch in range(steps - skip):
        policy.on_train_batch_begin(batch)
    policy.on_epoch_end(epoch)


def test_checkpoint_every_steps_counts_global_steps_and_skips_epoch_ends():
    policy, saves = _policy(("steps", 4))
    _epoch(policy, 0)
    _epoch(policy, 1)
    # global steps 4, 8, 12, 16 (not 20: the epoch checkpoint saves there)
    assert [(e, s) for e, s, _ in saves.saved] == [(0, 4), (0, 8), (1, 2), (1, 6)]
    policy, saves = _policy(("steps", 4))  # a resumed partial epoch: the same global steps
    _epoch(policy, 1, skip=3)
    assert [(e, s) for e, s, _ in saves.saved] == [(1, 6)] and saves.saved[0][2] == 1000 + 3


def test_checkpoint_every_time_saves_at_the_first_boundary_after_the_interval():
    now = [0.0]
    policy, saves = _policy(("seconds", 600.0), clock=lambda: now[0])
    policy.begin_fit()
    policy.on_epoch_begin(0)
    for batch in range(10):
        now[0] = batch * 250.0  # a step of 250 s
        policy.on_train_batch_begin(batch)
    assert [s for _, s, _ in saves.saved] == [3, 6, 9]  # 750 s, then 600 s after each save
    policy, saves = _policy(None)
    _epoch(policy, 0)
    assert saves.saved == []  # off


def test_sigterm_saves_at_the_next_boundary_unless_already_committed():
    signals = StopSignals()
    policy, saves = _policy(("steps", 5), signals=signals)
    policy.begin_fit()
    policy.on_epoch_begin(2)
    for batch in range(3):
        policy.on_train_batch_begin(batch)
    signals.preempt = signals.requested = True
    with pytest.raises(Preempted) as stop:
        policy.on_train_batch_begin(3)
    assert (stop.value.epoch, stop.value.step, stop.value.saved) == (2, 3, True) and saves.saved == [(2, 3, 1003)]
    with pytest.raises(Preempted) as stop:  # the same boundary again (a resume from it): nothing to save
        policy.on_train_batch_begin(3)
    assert not stop.value.saved and len(saves.saved) == 1
    signals.at_steps = False  # several processes: they stop at the epoch end instead
    policy.on_train_batch_begin(4)


@pytest.mark.parametrize("value", ["10parsecs", "-5", "1.5", "0s", "ten"])
def test_a_bad_checkpoint_every_is_refused_saying_what_it_takes(value):
    with pytest.raises(ValueError, match=r"'checkpoint_every' must be a number of steps >= 1 \(50\) or a time > 0 "
                                         rf"with a unit s, min or h .*Received: '{value}'"):
        apply_overrides(Config(), [f"checkpoint_every={value}"])
    assert Config(checkpoint_every=50).checkpoint_every == "50"  # an int from Python or JSON
    assert apply_overrides(Config(), ["checkpoint_every=10min"]).checkpoint_every == "10min"


def test_repair_keeps_the_named_step_checkpoint_and_prunes_the_rest(tmp_path):
    """What a writer killed after a step checkpoint's file but before its manifest leaves: the
    unnamed step file goes, the manifest's files (newest step, last and best epoch) and a
    user's file stay, last.keras points at the step checkpoint."""
    from layerkit.training.checkpoints import FORMAT, repair

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("epoch-0001.keras", "epoch-0002.keras", "step-00000012.keras", "step-00000015.keras", "notes.txt"):
        (folder / name).write_text(name)
    state = {"format": FORMAT, "epochs_completed": 2, "step": 4, "steps_per_epoch": 4, "data_step": 12,
             "data_end": 16, "metrics": {}, "last": "checkpoints/step-00000012.keras",
             "last_epoch": "checkpoints/epoch-0002.keras", "best": "checkpoints/epoch-0001.keras",
             "seed_states": []}
    (tmp_path / "state.json").write_text(json.dumps(state))
    repair(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["epoch-0001.keras", "epoch-0002.keras",
                                                         "notes.txt", "step-00000012.keras"]
    assert (tmp_path / "last.keras").read_text() == "step-00000012.keras"
    assert (tmp_path / "best.keras").read_text() == "epoch-0001.keras"
    del state["data_end"]  # a step manifest without its data position cannot be resumed
    (tmp_path / "state.json").write_text(json.dumps(state))
    with pytest.raises(ValueError, match="step checkpoint without its data position"):
        read_state(tmp_path)
