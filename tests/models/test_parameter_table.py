"""The committed parameter table (`layerkit models` reads it) matches the registry and the models."""

import pytest

from layerkit import models
from layerkit.models._parameters import PARAMETERS

REGENERATE = "regenerate it: .venv/bin/python tools/make_model_table.py"


def test_every_listed_model_has_a_row_and_no_row_is_stale():
    assert sorted(PARAMETERS) == models.names(), REGENERATE


def test_rows_are_at_the_builders_defaults():
    for name, (shape, num_classes, _) in PARAMETERS.items():
        d = models.defaults(name)
        assert (tuple(d.get("input_shape", ())), d.get("num_classes")) == (shape, num_classes), f"{name}: {REGENERATE}"


@pytest.mark.parametrize("name", ["cnn", "resnet-32"])
def test_counts_match_freshly_built_models(name):
    assert models.create(name).count_params() == PARAMETERS[name][2], REGENERATE
