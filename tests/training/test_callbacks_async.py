"""The harness does no work per step on the host: Keras dispatches its callbacks
asynchronously, and the lr it logs is the schedule's, computed on the host."""

import csv

import keras
import numpy as np
import pytest

from layerkit.data.pipeline import Pipeline
from layerkit.data.sources import open_dataset
from layerkit.training import apply_overrides, get_recipe, train
from layerkit.training.callbacks import GracefulStop
from layerkit.training.checkpoints import Checkpoints, StepCheckpoints
from layerkit.training.run import make_callbacks
from layerkit.training.schedules import make_schedule
from layerkit.training.stop import StopSignals


@pytest.mark.parametrize("chief, ema", [(True, 0.0), (True, 0.99), (False, 0.0)])
def test_the_run_callbacks_allow_asynchronous_dispatch(tmp_path, chief, ema):
    config = apply_overrides(get_recipe("sample"), [f"ema={ema}"])
    schedule = make_schedule(config, 10)
    pipe = Pipeline(open_dataset("sample", "test"), 32)
    checkpoints, signals = Checkpoints(tmp_path), StopSignals()
    steps = StepCheckpoints(checkpoints, ("steps", 5), 10, pipe, signals)  # works between steps: stays async
    callbacks = make_callbacks(config, tmp_path, chief, 10, schedule, checkpoints,
                               GracefulStop(signals), pipe.epoch_callback(None), step_checkpoints=steps)
    listed = keras.callbacks.CallbackList(callbacks)
    assert steps in callbacks and listed._async_train, [type(c).__name__ for c in callbacks]


def test_the_logged_lr_is_the_optimizers_at_each_epochs_first_step(tmp_path):
    config = apply_overrides(get_recipe("sample", smoke_run=True),
                             ["epochs=3", "steps_per_epoch=2", "test_limit=32", "report=false"])
    train(config, tmp_path / "run", verbose=0)
    with open(tmp_path / "run" / "history.csv", newline="") as f:
        logged = [float(r["lr"]) for r in csv.DictReader(f)]
    schedule = make_schedule(config, 2)
    expected = [float(keras.ops.convert_to_numpy(schedule(e * 2))) for e in range(3)]
    np.testing.assert_allclose(logged, expected, rtol=1e-6)
    assert len(set(logged)) > 1  # the schedule moved
