"""Every recipe's --smoke variant trains (two steps) through the real harness, compiled fast."""

import json

import jax
import pytest

from layerkit.training import apply_overrides, get_recipe, recipe_names, train
from layerkit.training import run as run_module

HEAVY = {"xception-flowers"}  # a 20M-parameter compile: -m large


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.large) if n in HEAVY else n for n in recipe_names()])
def test_recipe_smoke_trains(name, tmp_path, monkeypatch):
    seen = []
    compile_model = run_module.compile_model

    def recording(*args, **kwargs):  # the flag while the run compiles
        seen.append(jax.config.values["jax_disable_most_optimizations"])
        return compile_model(*args, **kwargs)

    monkeypatch.setattr(run_module, "compile_model", recording)
    config = apply_overrides(get_recipe(name, smoke_run=True), ["report=false"])  # --smoke as run, less the plots
    results = train(config, tmp_path / name, verbose=0)
    assert 0 <= results["test_accuracy_final"] <= 1 and results["test_images"] == 16
    state = json.loads((tmp_path / name / "state.json").read_text())
    assert state["epochs_completed"] == 1
    assert seen == [True] and not jax.config.values["jax_disable_most_optimizations"]  # scoped to the run
