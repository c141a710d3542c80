"""A speed-run recipe resumes exactly: 2 epochs uninterrupted equal 1 epoch, a stop, and a
resume, in weights and optimizer state (Muon momentum, lookahead's slow weights, the
alternating flips' step counter: all in the .keras checkpoint)."""

import keras
import numpy as np
import pytest

from layerkit.saving import load_model
from layerkit.training import apply_overrides, get_recipe, train
from layerkit.training.checkpoints import checkpoint_file
from layerkit.training.stop import StopSignals

OVERRIDES = ["epochs=2", "train_limit=128", "test_limit=32", "batch_size=32", "report=false",
             "model_options.widths=[8,16,16]", "precision=fp32", "tta=flip"]


def _state(path):
    model = load_model(path)
    return [keras.ops.convert_to_numpy(v) for v in model.variables + model.optimizer.variables]


@pytest.mark.parametrize("recipe", ["speedrun-94", "speedrun-94-sgd"])
def test_stop_after_one_epoch_then_resume_equals_two_epochs(recipe, tmp_path):
    config = apply_overrides(get_recipe(recipe, smoke_run=True), OVERRIDES)
    whole = train(config, tmp_path / "whole", verbose=0)
    stop = StopSignals()
    stop.requested = True  # as after a Ctrl-C: the run stops at the end of epoch 1
    assert train(config, tmp_path / "split", verbose=0, signals=stop)["stopped"]
    resumed = train(None, tmp_path / "split", resume=True, verbose=0)
    a, b = _state(checkpoint_file(tmp_path / "whole", "last")), _state(checkpoint_file(tmp_path / "split", "last"))
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert resumed["test_accuracy_final_tta"] == whole["test_accuracy_final_tta"]
    names = [v.path for v in load_model(checkpoint_file(tmp_path / "whole", "last")).optimizer.variables]
    assert any("slow" in n for n in names) == (recipe == "speedrun-94-sgd")  # lookahead's state is saved
