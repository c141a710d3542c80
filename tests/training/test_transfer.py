"""Transfer learning in a run: frozen backbone features computed once, then a fine-tuning phase."""

import dataclasses

import numpy as np
import pytest

from layerkit.training import apply_overrides, get_recipe, train
from layerkit.training.checkpoints import Checkpoints
from layerkit.saving import load_model


def test_two_phases_features_once_then_the_backbone_trains_but_batchnorm(tmp_path, monkeypatch):
    from layerkit.forward import Forward

    forwards, saved = [], []
    made = Forward.__init__

    def counting(self, model, **options):  # every forward pass of a run goes through a Forward
        forwards.append(model.name)
        return made(self, model, **options)

    def recording(self, epoch, logs=None):
        saved.append((self.model.name, {v.path: np.array(v) for v in self.model.weights}))
        return on_epoch_end(self, epoch, logs)

    on_epoch_end = Checkpoints.on_epoch_end
    monkeypatch.setattr(Forward, "__init__", counting)
    monkeypatch.setattr(Checkpoints, "on_epoch_end", recording)
    config = apply_overrides(get_recipe("transfer", smoke_run=True),
                             ["report=false", "epochs=2", "unfreeze_at=1", "unfreeze_lr=0.01", "head_hidden=8"])
    results = train(config, tmp_path / "run", verbose=0)
    # one forward function ran the backbone over the train and validation images (the
    # extractor), then one the whole model over the test images (end of training, best weights)
    assert forwards == ["extractor", "efficientnet-lite0-run"]
    assert [name for name, _ in saved] == ["efficientnet-lite0-run"] * 2  # checkpoints hold the whole model
    (_, first), (_, second) = saved
    changed = {p for p in first if not np.array_equal(first[p], second[p])}
    assert {"stem_conv/kernel", "block0_dwconv/kernel"} <= changed  # phase 2 trains the backbone
    assert not any("moving_" in p or "gamma" in p or "beta" in p for p in changed)  # BatchNorm stays frozen
    model = load_model(tmp_path / "run" / "last.keras")
    assert model.input_shape[1:] == (32, 32, 3) and results["test_images"] == 16


def test_unfreeze_needs_a_frozen_backbone_and_a_later_phase():
    config = get_recipe("transfer")
    with pytest.raises(ValueError, match="needs freeze_backbone=true"):
        apply_overrides(config, ["freeze_backbone=false", "unfreeze_at=3"])
    with pytest.raises(ValueError, match=r"'unfreeze_at' \(40\) must be below epochs \(40\)"):
        apply_overrides(config, ["unfreeze_at=40"])
