"""Every recipe's --smoke variant trains (two steps) through the real harness."""

import json

import pytest

from layerkit.training import apply_overrides, get_recipe, recipe_names, train

HEAVY = {"xception-flowers"}  # a 20M-parameter compile: -m large


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.large) if n in HEAVY else n for n in recipe_names()])
def test_recipe_smoke_trains(name, tmp_path):
    config = apply_overrides(get_recipe(name, smoke_run=True),
                             ["steps_per_epoch=2", "test_limit=32", "report=false"])
    results = train(config, tmp_path / name, verbose=0)
    assert 0 <= results["test_accuracy_final"] <= 1
    state = json.loads((tmp_path / name / "state.json").read_text())
    assert state["epochs_completed"] == 1
