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
    ("epochs=three", "'epochs' expects int. Received: 'three'"),
    ("nesterov=maybe", "'nesterov' expects bool"),
    ("optimizer=lamb", "'optimizer' must be one of sgd, adam, adamw, rmsprop"),
    ("validation=1.5", "'validation' must be a fraction in \\[0, 1\\)"),
    ("test_split=0", "'test_split' must be a fraction in \\(0, 1\\)"),
    ("epochs=0", "'epochs' must be >= 1"),
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
