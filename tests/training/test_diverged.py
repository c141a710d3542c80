"""A diverged run stops with its own exit status naming epoch and step; non-finite weights are
never saved or published; results.json says failed. The check runs inside the compiled step."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from layerkit.training.checkpoints import Checkpoints
from layerkit.training.losses import NonFiniteStep, SparseCategoricalCrossentropy
from layerkit.training.stop import DIVERGED, DivergedError


def test_the_first_non_finite_step_is_found_inside_the_compiled_step():
    # lr 1e38: step 1 is finite, step 2's loss is NaN through the L2 penalty while the
    # predictions stay finite (softmax saturates): the loss itself is watched
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(
        3, activation="softmax", kernel_regularizer=keras.regularizers.L2(1e-4))])
    watch = NonFiniteStep()
    model.compile(optimizer=keras.optimizers.SGD(1e38), loss=SparseCategoricalCrossentropy(),
                  metrics=[watch], jit_compile=True)
    watch.watch(model)
    x = np.random.default_rng(0).random((64, 4), dtype="float32") * 100
    y = np.arange(64) % 3
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((float(logs["nonfinite_step"]), float(logs["loss"])))

    model.fit(x, y, batch_size=16, epochs=1, verbose=0, callbacks=[Record()])
    assert seen[0][0] == 2 and not np.isfinite(seen[0][1])


def test_non_finite_weights_are_never_saved(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    kernel = model.layers[0].kernel
    kernel.assign(np.array([[np.nan], [1.0]], "float32"))
    checkpoints = Checkpoints(tmp_path)
    checkpoints.set_model(model)
    with pytest.raises(DivergedError, match="epoch 3 ended with non-finite weights"):
        checkpoints.on_epoch_end(2, {"val_accuracy": 0.5})
    assert list(tmp_path.iterdir()) == []  # no checkpoint, no state.json, no last/best.keras


def test_a_diverged_run_exits_with_its_own_status_naming_epoch_and_step(tmp_path):
    out = tmp_path / "run"  # adam at lr 1e38 overflows the head in one step: step 2's loss is NaN
    proc = subprocess.run([sys.executable, "-m", "layerkit.cli", "train", "--smoke", "--out", str(out),
                           "optimizer=adam", "optimizer_options={}", "lookahead=false", "lr=1e38",
                           "steps_per_epoch=2", "epochs=2", "train_limit=64", "test_limit=32", "batch_size=32",
                           "report=false", "warmup_epochs=0"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == DIVERGED == 5, proc.stderr[-3000:]
    assert "training diverged: the training loss became nan at step 2 of epoch 1" in proc.stderr
    assert "Traceback" not in proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "failed" and (results["epoch"], results["step"]) == (1, 2)
    assert "test_accuracy_final" not in results and results["epochs_completed"] == 0
    assert not [p for p in ("state.json", "best.keras", "last.keras") if (out / p).exists()]
