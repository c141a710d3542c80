"""The zoo test, parametrised over the whole registry: a new model is tested the day it is registered."""

import numpy as np
import pytest
import keras

from layerkit import models

# Small inputs keep CPU time low (eager JAX compiles op by op); convolutional models with
# global pooling have the same parameter count at any input size.
FIXED_INPUT = {"xception": (71, 71, 3), "cnn": (16, 16, 3), "squeezenet": (16, 16, 3),  # 4 pools
               "airbench94": (32, 32, 3), "airbench96": (32, 32, 3),
               "resnet50": (32, 32, 3), "mobilenetv3-large": (32, 32, 3), "efficientnet-b0": (32, 32, 3)}  # a 2x2 valid whitening conv, then 3 pools x2
# Forward passes of these run only under -m large (the build and count always run).
HUGE = {"wrn-28-10", "alphazero-39-256", "wrn-16-8", "wrn-40-4", "xception", "efficientnet-lite0",
        "resnet50", "mobilenetv3-large", "efficientnet-b0",
        "resnet-110", "resnet-164", "revnet-110", "revnet-164"}


def _small(name):
    if name.startswith("alphazero"):
        return {}
    return {"input_shape": FIXED_INPUT.get(name, (8, 8, 3))}


def _forward(model):
    shape = model.input_shape[1:]
    x = np.random.default_rng(0).uniform(size=(2, *shape)).astype("float32")
    out = model(x, training=False)
    for y in out.values() if isinstance(out, dict) else [out]:
        assert np.isfinite(keras.ops.convert_to_numpy(y)).all()
        assert y.shape[0] == 2


@pytest.mark.parametrize("name", models.names())
def test_every_model_builds_and_predicts(name):
    model = models.create(name, **_small(name))
    assert model.count_params() > 0
    if name not in HUGE:
        _forward(model)


@pytest.mark.large
@pytest.mark.parametrize("name", sorted(HUGE))
def test_huge_model_predicts(name):
    _forward(models.create(name, **_small(name)))


def _wrn_params(depth, k, classes=10):
    """Independent hand count of WRN-depth-k (pre-activation blocks, 1x1 projections)."""
    n = (depth - 4) // 6
    total = 9 * 3 * 16  # stem, no bias
    cin = 16
    for c in (16 * k, 32 * k, 64 * k):
        for b in range(n):
            total += 4 * cin + 9 * cin * c + 4 * c + 9 * c * c
            if cin != c:
                total += cin * c
            cin = c
    return total + 4 * cin + cin * classes + classes


def test_wrn_parameter_counts():
    assert models.create("wrn-40-2").count_params() == _wrn_params(40, 2)
    assert round(_wrn_params(40, 2) / 1e6, 1) == 2.2  # the paper's 2.2M
    assert round(_wrn_params(28, 10) / 1e6, 1) == 36.5  # the paper's 36.5M


@pytest.mark.large
def test_wrn_28_10_parameter_count():
    assert models.create("wrn-28-10").count_params() == _wrn_params(28, 10)


def test_svgg_parameter_count():
    convs = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256)]
    expected = sum(9 * a * b + b + 4 * b for a, b in convs)  # conv + bias + BN
    expected += (4 * 4 * 256) * 1024 + 1024 + 1024 * 10 + 10
    model = models.create("svgg")
    assert model.count_params() == expected
    assert round(expected / 1e6, 1) == 5.4  # "about 5.3M" in the tutorial


def test_alphazero_structure_and_count():
    model = models.create("alphazero-19-256")
    tower = model.get_layer("tower")
    assert isinstance(tower, keras.Sequential)
    assert sum(type(l).__name__ == "Residual" for l in tower.layers) == 19
    f = 256
    expected = 9 * 17 * f + 4 * f + 19 * (2 * 9 * f * f + 2 * 4 * f)
    expected += f * 2 + 4 * 2 + (19 * 19 * 2) * 362 + 362  # policy head
    expected += f * 1 + 4 * 1 + 361 * 256 + 256 + 256 + 1  # value head
    assert model.count_params() == expected
    assert round(expected / 1e6, 1) == 22.8
    out = models.create("alphazero-2-8")(np.zeros((3, 19, 19, 17), "float32"))
    assert out["policy"].shape == (3, 362) and out["value"].shape == (3, 1)
    assert np.all(np.abs(keras.ops.convert_to_numpy(out["value"])) <= 1)


def test_squeezenet_defaults_to_flowers():
    model = models.create("squeezenet")
    assert model.input_shape == (None, 192, 192, 3) and model.output_shape == (None, 5)
    assert sum(type(l).__name__ == "Fire" for l in model.layers) == 5


@pytest.mark.parametrize("depth", [10, 22, 40])
def test_any_valid_wrn_depth(depth):
    assert models.create(f"wrn-{depth}-1").name == f"wrn-{depth}-1"


def test_invalid_wrn_depth_lists_valid_ones():
    with pytest.raises(ValueError, match=r"depth=18.*|\(depth - 4\) % 6"):
        models.create("wrn-18-2")


def test_unknown_model_lists_names():
    with pytest.raises(ValueError, match="Valid names:.*svgg"):
        models.create("vgg19")


def test_unknown_option_lists_valid_options():
    with pytest.raises(ValueError, match="Valid options:.*dropout"):
        models.create("svgg", dropuot=0.5)


def test_bad_values():
    with pytest.raises(ValueError, match="num_classes"):
        models.create("svgg", num_classes=1)
    with pytest.raises(ValueError, match="input_shape"):
        models.create("svgg", input_shape=(32, 32))
    with pytest.raises(ValueError, match="weights"):
        models.create("xception", weights="/no/such/file.h5", input_shape=(71, 71, 3))


def test_overrides_reach_the_model():
    model = models.create("wrn-16-1", num_classes=7, dropout=0.3, input_shape=(16, 16, 3))
    assert model.output_shape == (None, 7)
    assert model.get_layer("group0").dropout == 0.3


def test_saved_zoo_model_round_trips(tmp_path):
    model = models.create("wrn-10-1", input_shape=(8, 8, 3))
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)),
                               keras.ops.convert_to_numpy(model(x)), atol=1e-6)
