"""The RevNet zoo and its ResNet baselines: the paper's configurations."""

import numpy as np
import pytest
import keras

from layerkit import models
from layerkit.blocks import Bottleneck, Residual, RevBlock, ReversibleStack

SMALL = dict(input_shape=(8, 8, 3))


def _layers(model, kind):
    return [layer for layer in model.layers if isinstance(layer, kind)]


# Gomez et al. 2017, Table 1 (parameters in millions). Our ResNets use 1x1 projection
# shortcuts where the paper's code zero-pads, hence "within 2%".
PAPER_PARAMS = {
    "resnet-32": 0.46, "resnet-110": 1.73, "resnet-164": 1.70,
    "revnet-38": 0.46, "revnet-110": 1.73, "revnet-164": 1.75,
}


def _revnet_params(units, widths, bottleneck, classes=10, stem=32):
    """Independent hand count (BN: 4 per channel; convolutions without bias)."""
    def bn(c):
        return 4 * c

    def function(cin, cout):
        if bottleneck:
            m = cout // 4
            return bn(cin) + cin * m + bn(m) + 9 * m * m + bn(m) + m * cout
        return bn(cin) + 9 * cin * cout + bn(cout) + 9 * cout * cout

    total, cin = 27 * stem, stem
    for width in widths:
        c = 4 * width if bottleneck else width
        for _ in range(units):
            total += function(cin // 2, c // 2) + function(c // 2, c // 2)
            if bottleneck and cin != c:
                total += 2 * (cin // 2) * (c // 2)  # the two 1x1 shortcut projections
            cin = c
    return total + bn(cin) + cin * classes + classes


def _check_paper_count(model):
    expected = PAPER_PARAMS[model.name]
    assert abs(model.count_params() / 1e6 - expected) / expected < 0.02, model.count_params()


@pytest.mark.parametrize("depth, units, widths, bottleneck", [
    (38, 3, (32, 64, 112), False),
    (110, 9, (32, 64, 128), False),
    (164, 9, (32, 64, 128), True),
])
def test_revnet_structure_and_parameter_counts(depth, units, widths, bottleneck):
    model = models.create(f"revnet-{depth}", **SMALL)
    _check_paper_count(model)
    assert model.count_params() == _revnet_params(units, widths, bottleneck)
    stacks, transitions = _layers(model, ReversibleStack), _layers(model, RevBlock)
    assert len(stacks) == 3 and all(s.reversible and s.bottleneck == bottleneck for s in stacks)
    assert sum(s.blocks for s in stacks) + len(transitions) == 3 * units
    # basic: stage 0 keeps the stem's 32 channels, so only 2 transitions
    assert len(transitions) == (3 if bottleneck else 2)
    assert [s.filters for s in stacks] == [w * (4 if bottleneck else 1) for w in widths]


@pytest.mark.parametrize("depth, blocks, kind", [
    (32, 5, Residual),
    pytest.param(110, 18, Residual, marks=pytest.mark.large),
    pytest.param(164, 18, Bottleneck, marks=pytest.mark.large),
])
def test_resnet_structure_and_parameter_counts(depth, blocks, kind):
    model = models.create(f"resnet-{depth}", **SMALL)
    _check_paper_count(model)
    assert len(_layers(model, kind)) == 3 * blocks
    assert model.output_shape == (None, 10)


def test_reversible_false_builds_the_same_network():
    rev = models.create("revnet-38", **SMALL)
    plain = models.create("revnet-38", reversible=False, **SMALL)
    assert [w.path for w in rev.weights] == [w.path for w in plain.weights]
    assert not any(s.reversible for s in _layers(plain, ReversibleStack))
    plain.set_weights(rev.get_weights())
    x = np.random.default_rng(0).normal(size=(2, *SMALL["input_shape"])).astype("float32")
    np.testing.assert_allclose(np.array(rev(x, training=True)), np.array(plain(x, training=True)),
                               rtol=1e-4, atol=1e-5)


def test_saved_revnet_round_trips(tmp_path):
    model = models.create("revnet-38", **SMALL)
    x = np.random.default_rng(0).normal(size=(2, *SMALL["input_shape"])).astype("float32")
    model.save(tmp_path / "revnet.keras")
    loaded = keras.saving.load_model(tmp_path / "revnet.keras")
    assert all(s.reversible for s in _layers(loaded, ReversibleStack))
    np.testing.assert_allclose(np.array(loaded(x, training=False)), np.array(model(x, training=False)),
                               atol=1e-6)


def test_invalid_depths_list_valid_ones():
    with pytest.raises(ValueError, match="38, 110, 164"):
        models.create("revnet-56")
    with pytest.raises(ValueError, match=r"8, 14, 20, 26, 32.*164"):
        models.create("resnet-33")
    with pytest.raises(ValueError, match="depth=170"):
        models.create("resnet-170")  # 6n+2 but not 9n+2 past 164: no bottleneck layout


@pytest.mark.large
def test_revnet_training_step_equals_plain_backprop():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 10, size=4)
    trained = []
    for reversible in (True, False):
        model = models.create("revnet-38", input_shape=(16, 16, 3), reversible=reversible)
        if trained:
            model.set_weights(trained[0][1])
        initial = model.get_weights()
        model.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy", jit_compile=True)
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
        trained.append((model, initial))
    for a, b in zip(trained[0][0].weights, trained[1][0].weights):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-5, err_msg=a.path)


def test_weight_decay_reaches_every_convolution():
    model = models.create("revnet-38", weight_decay=1e-4, **SMALL)
    # stem + stage 0 stack (3 blocks x 4 convs) + 2 x (transition 4 + stack 2 x 4)
    assert len(model.losses) == 1 + 12 + 2 * (4 + 8)
