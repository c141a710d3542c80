import pytest

from layerkit.training import Config, apply_overrides, get_recipe, recipe_names
from layerkit.training import recipes


def test_overrides_convert_types():
    c = apply_overrides(Config(), ["lr=0.2", "epochs=3", "nesterov=false", "step_epochs=10,20",
                                   "model_options.dropout=0.3", "validation=0.1"])
    assert (c.lr, c.epochs, c.nesterov, c.step_epochs) == (0.2, 3, False, (10.0, 20.0))
    assert c.model_options == {"dropout": 0.3} and c.validation == 0.1


@pytest.mark.parametrize("override, match", [
    ("lrr=0.1", "Unknown config key 'lrr'. Valid keys: .*lr"),
    ("epochs=three", "'epochs' must be an int >= 1. Received: 'three'"),
    ("nesterov=maybe", "'nesterov' must be true or false"),
    ("optimizer=lamb", "'optimizer' must be one of sgd, adam, adamw, rmsprop"),
    ("validation=1.5", "'validation' must be a finite number in \\[0, 1\\)"),
    ("test_split=0", "'test_split' must be a finite number in \\(0, 1\\)"),
    ("epochs=0", "'epochs' must be an int >= 1. Received: 0"),
    ("novalue", "key=value"),
])
def test_bad_overrides_say_what_is_valid(override, match):
    with pytest.raises(ValueError, match=match):
        apply_overrides(Config(), [override])


def test_every_recipe_is_documented_and_valid():
    assert {"sample", "svgg-cifar10", "wrn-40-2-cifar10", "cnn-flowers", "squeezenet-flowers",
            "xception-flowers", "revnet-38-cifar10", "resnet-32-cifar10"} <= set(recipe_names())
    for name in recipe_names():
        assert recipes.describe(name), name
        config = get_recipe(name)
        smoke = get_recipe(name, smoke_run=True)
        assert smoke.model == config.model and smoke.optimizer == config.optimizer
        assert smoke.epochs == 1 and smoke.data == "sample"
        assert smoke.fast_compile and not config.fast_compile  # only the smoke run compiles fast


def test_unknown_recipe_lists_recipes():
    with pytest.raises(ValueError, match="Valid recipes: .*wrn-40-2-cifar10"):
        get_recipe("wrn-40-2")


def test_config_json_round_trip():
    c = get_recipe("wrn-40-2-cifar10")
    import json

    assert Config.from_dict(json.loads(c.to_json())) == c


def test_speedrun_keys_are_validated_where_they_apply():
    from layerkit.training.config import Config, apply_overrides

    config = apply_overrides(Config(), ["optimizer=muon", "optimizer_options.head_lr=100", "lookahead=true",
                                        "tta=6view", "schedule=linear", "start_lr=0.01"])
    assert config.optimizer_options == {"head_lr": 100} and config.lookahead and config.tta == "6view"
    with pytest.raises(ValueError, match="'optimizer_options' applies to optimizer muon or decoupled-sgd"):
        apply_overrides(Config(), ["optimizer_options.head_lr=1"])
    with pytest.raises(ValueError, match="'lookahead' needs optimizer muon or decoupled-sgd"):
        apply_overrides(Config(), ["lookahead=true"])
    with pytest.raises(ValueError, match="Unknown optimizer_options key 'head_rate'. Valid keys: head_lr"):
        apply_overrides(Config(optimizer="muon"), ["optimizer_options.head_rate=1"])
    with pytest.raises(ValueError, match=r"optimizer_options.muon_momentum must be a number in \[0, 1\). Received: 1.5"):
        apply_overrides(Config(optimizer="muon"), ["optimizer_options.muon_momentum=1.5"])
    with pytest.raises(ValueError, match="'tta' must be one of none, flip, 6view. Received: '4view'"):
        apply_overrides(Config(), ["tta=4view"])


def test_runs_saved_with_the_tta_flag_still_load():
    from layerkit.training.config import Config

    assert Config.from_dict({"tta": True}).tta == "flip" and Config.from_dict({"tta": False}).tta == "none"


# --- one range table (`RANGES`) for Config(), apply_overrides and the CLI ---


def test_every_config_key_has_a_range():  # a new key is a field and one line of RANGES
    from layerkit.training.config import RANGES, keys

    assert set(keys()) <= set(RANGES), sorted(set(keys()) - set(RANGES))


@pytest.mark.parametrize("override, match", [
    ("train_limit=-1", r"'train_limit' must be an int >= 0 \(0 = all\). Received: -1"),
    ("test_limit=-5", r"'test_limit' must be an int >= 0 \(0 = all\). Received: -5"),
    ("warmup_epochs=-1", r"'warmup_epochs' must be a finite number >= 0. Received: -1.0"),
    ("lr=inf", r"'lr' must be a finite number > 0. Received: inf"),
    ("lr=nan", r"'lr' must be a finite number > 0. Received: nan"),
    ("lr=0", r"'lr' must be a finite number > 0. Received: 0.0"),
    ("seed=-1", r"'seed' must be an int in \[0, 4294967296\). Received: -1"),
    ("step_epochs=3,-1", r"'step_epochs' must be a list of numbers each >= 0. Received: \(3.0, -1.0\)"),
    ("image_size=-32", r"'image_size' must be an int >= 0 \(0 = fitted to the data\). Received: -32"),
])
def test_out_of_range_values_are_refused_naming_key_value_and_range(override, match):
    with pytest.raises(ValueError, match=match):
        apply_overrides(Config(), [override])


def test_config_checks_its_fields_at_construction():
    from layerkit.training.config import ConfigTypeError

    with pytest.raises(TypeError, match=r"Config key 'lr' must be a finite number > 0. Received: 'abc' \(str\)") as err:
        Config(lr="abc")
    assert isinstance(err.value, ValueError) and isinstance(err.value, ConfigTypeError)
    with pytest.raises(TypeError, match=r"'epochs' must be an int >= 1. Received: True \(bool\)"):
        Config(epochs=True)
    with pytest.raises(ValueError, match=r"'train_limit' must be an int >= 0 \(0 = all\). Received: -1"):
        Config(train_limit=-1)
    with pytest.raises(ValueError, match="'lr' must be a finite number > 0. Received: nan"):
        Config(lr=float("nan"))
    import dataclasses

    with pytest.raises(ValueError, match="'warmup_epochs'"):
        dataclasses.replace(Config(), warmup_epochs=-1.0)
    c = Config(lr=1, step_epochs=[2, 5])  # an int for a float, a list for a tuple: as JSON gives them
    assert c.lr == 1.0 and isinstance(c.lr, float) and c.step_epochs == (2, 5)
