import numpy as np
import pytest
import keras

from layerkit.blocks import Bottleneck
from tests.layer_checks import check_layer


def bn(c):  # gamma, beta, moving mean, moving variance
    return 4 * c


def conv(k, cin, cout):
    return k * k * cin * cout


@pytest.mark.parametrize(
    "kwargs, in_ch, out_shape, params",
    [
        # identity shortcut: 16 -> bottleneck 4 -> 16
        (dict(filters=4), 16, (8, 8, 16),
         bn(16) + conv(1, 16, 4) + bn(4) + conv(3, 4, 4) + bn(4) + conv(1, 4, 16)),
        # stride 2 and wider: a strided 1x1 projection on the shortcut
        (dict(filters=4, strides=2), 8, (4, 4, 16),
         bn(8) + conv(1, 8, 4) + bn(4) + conv(3, 4, 4) + bn(4) + conv(1, 4, 16) + conv(1, 8, 16)),
        # expansion 2
        pytest.param(dict(filters=4, expansion=2), 8, (8, 8, 8),
                     bn(8) + conv(1, 8, 4) + bn(4) + conv(3, 4, 4) + bn(4) + conv(1, 4, 8),
                     marks=pytest.mark.large),
    ],
)
def test_layer_contract(kwargs, in_ch, out_shape, params, tmp_path):
    check_layer(lambda: Bottleneck(**kwargs), (8, 8, in_ch), params, out_shape, tmp_path)


def test_zero_residual_branch_is_the_identity():
    layer = Bottleneck(4)
    layer.build((2, 6, 6, 16))
    layer.conv3.kernel.assign(np.zeros(layer.conv3.kernel.shape))
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 16)).astype("float32")
    np.testing.assert_array_equal(np.array(layer(x, training=False)), x)


def test_matches_a_numpy_reference():
    layer = Bottleneck(2, expansion=2)
    x = np.random.default_rng(1).normal(size=(1, 5, 5, 4)).astype("float32")
    y = np.array(layer(x, training=False))

    def bn_relu(h, bn_layer):
        g, b, m, v = (np.array(w) for w in bn_layer.weights)
        return np.maximum((h - m) / np.sqrt(v + bn_layer.epsilon) * g + b, 0)

    def conv1x1(h, k):
        return np.einsum("nhwi,io->nhwo", h, np.array(k)[0, 0])

    def conv3x3(h, k):
        k = np.array(k)
        p = np.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
        return sum(np.einsum("nhwi,io->nhwo", p[:, a:a + 5, b:b + 5], k[a, b])
                   for a in range(3) for b in range(3))

    h = bn_relu(x, layer.bn1)
    r = conv1x1(h, layer.conv1.kernel)
    r = conv3x3(bn_relu(r, layer.bn2), layer.conv2.kernel)
    r = conv1x1(bn_relu(r, layer.bn3), layer.conv3.kernel)
    np.testing.assert_allclose(y, r + x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(filters=0), "filters=0"),
        (dict(filters=4, strides=0), r"strides=\(0, 0\)"),
        (dict(filters=4, expansion=0), "expansion=0"),
        (dict(filters=4, momentum=1.5), "momentum=1.5"),
        (dict(filters=4, epsilon=0), "epsilon=0"),
        (dict(filters=4, data_format="nhwc"), "data_format='nhwc'"),
    ],
)
def test_bad_arguments_are_named(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Bottleneck(**kwargs)


def test_rejects_non_image_input():
    with pytest.raises(ValueError, match="4-D"):
        Bottleneck(4).build((2, 16))
