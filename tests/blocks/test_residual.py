import numpy as np
import pytest
import keras

from layerkit.blocks import Residual
from tests.layer_checks import check_layer


def bn(c):  # gamma, beta, moving mean, moving variance
    return 4 * c


def conv(k, cin, cout):
    return k * k * cin * cout


@pytest.mark.parametrize(
    "kwargs, in_ch, out_shape, params",
    [
        # identity shortcut, post-activation: two 3x3 convs + two BNs
        (dict(filters=16), 16, (8, 8, 16), 2 * conv(3, 16, 16) + 2 * bn(16)),
        # stride 2, wider: projection conv + BN on the shortcut
        (dict(filters=32, strides=2), 16, (4, 4, 32),
         conv(3, 16, 32) + conv(3, 32, 32) + 2 * bn(32) + conv(1, 16, 32) + bn(32)),
        # pre-activation: first BN sees the input channels; projection without BN
        (dict(filters=32, preactivation=True, dropout=0.3), 16, (8, 8, 32),
         bn(16) + conv(3, 16, 32) + bn(32) + conv(3, 32, 32) + conv(1, 16, 32)),
        # separable: depthwise 3x3 + pointwise 1x1 per conv
        (dict(filters=16, separable=True), 16, (8, 8, 16),
         2 * (3 * 3 * 16 + 16 * 16) + 2 * bn(16)),
        # rectangular kernel
        (dict(filters=8, kernel_size=(1, 3)), 8, (8, 8, 8), 2 * (3 * 8 * 8) + 2 * bn(8)),
    ],
)
def test_residual_contract(kwargs, in_ch, out_shape, params, tmp_path):
    check_layer(lambda: Residual(**kwargs), (8, 8, in_ch), params, out_shape, tmp_path)


def test_identity_block_adds_its_input():
    layer = Residual(4, 3)
    x = np.random.default_rng(1).normal(size=(2, 5, 5, 4)).astype("float32")
    layer.build(x.shape)
    for w in layer.conv2.weights:  # zero residual branch: y = relu(bn2(0) + x) = relu(x)
        w.assign(np.zeros(w.shape, "float32"))
    np.testing.assert_allclose(np.array(layer(x, training=False)), np.maximum(x, 0), atol=1e-6)


def test_channels_first_matches_channels_last():
    last = Residual(6, 3, strides=2)
    first = Residual(6, 3, strides=2, data_format="channels_first")
    x = np.random.default_rng(2).normal(size=(2, 6, 6, 3)).astype("float32")
    last.build(x.shape)
    first.build((2, 3, 6, 6))
    for a, b in zip(first.weights, last.weights):
        a.assign(np.array(b))
    y_last = np.array(last(x, training=False))
    y_first = np.array(first(np.transpose(x, (0, 3, 1, 2)), training=False))
    np.testing.assert_allclose(np.transpose(y_first, (0, 2, 3, 1)), y_last, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(filters=0), "filters"),
        (dict(filters=2.5), "filters"),
        (dict(filters=8, kernel_size=0), "kernel_size"),
        (dict(filters=8, kernel_size=(3, 3, 3)), "kernel_size"),
        (dict(filters=8, strides=-1), "strides"),
        (dict(filters=8, dropout=1.0), "dropout"),
        (dict(filters=8, momentum=1.5), "momentum"),
        (dict(filters=8, epsilon=0), "epsilon"),
        (dict(filters=8, data_format="nhwc"), "data_format"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Residual(**kwargs)


def test_rejects_non_image_input():
    with pytest.raises(ValueError, match="4-D"):
        keras.Sequential([keras.Input((10,)), Residual(8)])


def test_sequential_summary_counts_the_blocks():
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(16, 3, padding="same"),
                              Residual(16, 3), Residual(16, 3), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(10)])
    lines = []
    model.summary(print_fn=lambda line, **kw: lines.append(line))
    text = "\n".join(lines)
    rows = [line for line in text.splitlines() if "(Residual)" in line]
    assert len(rows) == 2 and all("4,736" in r for r in rows)
    assert model.count_params() == 448 + 2 * 4736 + 170
