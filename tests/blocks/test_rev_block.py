import numpy as np
import pytest
import keras

from layerkit.blocks import RevBlock
from tests.layer_checks import check_layer


def bn(c):  # gamma, beta, moving mean, moving variance
    return 4 * c


def conv(k, cin, cout):
    return k * k * cin * cout


def basic_function(cin, cout):  # BN-ReLU-conv3x3 -> BN-ReLU-conv3x3
    return bn(cin) + conv(3, cin, cout) + bn(cout) + conv(3, cout, cout)


def bottleneck_function(cin, cout):  # BN-ReLU-conv1x1 -> BN-ReLU-conv3x3 -> BN-ReLU-conv1x1
    mid = cout // 4
    return bn(cin) + conv(1, cin, mid) + bn(mid) + conv(3, mid, mid) + bn(mid) + conv(1, mid, cout)


@pytest.mark.parametrize(
    "kwargs, in_ch, out_shape, params",
    [
        # reversible: F and G map 4 -> 4 channels
        (dict(filters=8), 8, (6, 6, 8), 2 * basic_function(4, 4)),
        # bottleneck halves of 8 channels, inner width 2
        pytest.param(dict(filters=16, bottleneck=True), 16, (6, 6, 16),
                     2 * bottleneck_function(8, 8), marks=pytest.mark.large),
        # transition: strided, 8 -> 16; average-pool + zero-pad shortcuts, no parameters
        (dict(filters=16, strides=2), 8, (3, 3, 16), basic_function(4, 8) + basic_function(8, 8)),
        # bottleneck transition: two strided 1x1 projections
        pytest.param(dict(filters=16, strides=2, bottleneck=True), 8, (3, 3, 16),
                     bottleneck_function(4, 8) + bottleneck_function(8, 8) + 2 * conv(1, 4, 8),
                     marks=pytest.mark.large),
    ],
)
def test_layer_contract(kwargs, in_ch, out_shape, params, tmp_path):
    check_layer(lambda: RevBlock(**kwargs), (6, 6, in_ch), params, out_shape, tmp_path)


def _block_with_random_statistics(shape, **kwargs):
    block = RevBlock(**kwargs)
    block.build(shape)
    rng = np.random.default_rng(3)
    for fn in (block.f, block.g):
        for bn_layer in fn.norms:
            bn_layer.moving_mean.assign(rng.normal(size=bn_layer.moving_mean.shape))
            bn_layer.moving_variance.assign(rng.uniform(0.5, 2, size=bn_layer.moving_variance.shape))
    return block


@pytest.mark.parametrize("bottleneck", [False, True])
def test_forward_is_the_coupling_and_inverse_recovers_the_input(bottleneck):
    block = _block_with_random_statistics((2, 5, 5, 16), filters=16, bottleneck=bottleneck)
    x = np.random.default_rng(0).normal(size=(2, 5, 5, 16)).astype("float32")
    y = np.array(block(x, training=False))
    x1, x2 = x[..., :8], x[..., 8:]
    y1 = x1 + np.array(block.f(x2, training=False))
    y2 = x2 + np.array(block.g(y1, training=False))
    np.testing.assert_allclose(y, np.concatenate([y1, y2], -1), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.array(block.inverse(y)), x, rtol=1e-5, atol=1e-5)
    assert not np.allclose(y, x, atol=1e-2)  # the block did something


def test_transition_shortcut_pools_and_pads():
    block = RevBlock(12, strides=2)
    block.build((1, 4, 4, 8))
    for fn in (block.f, block.g):
        fn.convs[-1].kernel.assign(np.zeros(fn.convs[-1].kernel.shape))  # F = G = 0
    x = np.random.default_rng(0).normal(size=(1, 4, 4, 8)).astype("float32")
    y = np.array(block(x, training=False))
    pooled = x.reshape(1, 2, 2, 2, 2, 8).mean(axis=(2, 4))
    # each half (4 channels) is pooled and zero-padded by one channel each side to 6
    for half, out in ((pooled[..., :4], y[..., :6]), (pooled[..., 4:], y[..., 6:])):
        np.testing.assert_allclose(out[..., 1:5], half, rtol=1e-6)
        np.testing.assert_array_equal(out[..., [0, 5]], 0)


def test_transition_has_no_inverse():
    block = RevBlock(16, strides=2)
    block.build((1, 4, 4, 8))
    with pytest.raises(ValueError, match="has no inverse"):
        block.inverse(np.zeros((1, 2, 2, 16), "float32"))


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(filters=7), "filters=7"),
        (dict(filters=12, bottleneck=True), "filters=12"),
        (dict(filters=8, strides=0), "strides"),
        (dict(filters=8, momentum=0), "momentum=0"),
        (dict(filters=8, epsilon=-1), "epsilon=-1"),
    ],
)
def test_bad_arguments_are_named(kwargs, word):
    with pytest.raises(ValueError, match=word):
        RevBlock(**kwargs)


def test_bad_input_channels():
    with pytest.raises(ValueError, match="even channel count"):
        RevBlock(8).build((1, 4, 4, 7))
    with pytest.raises(ValueError, match="filters=8"):
        RevBlock(8).build((1, 4, 4, 16))


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_convolution_gradients_equal_keras_conv2d(kernel_size):
    """F and G use a Conv2D with a hand-written VJP (fast inside lax.scan on XLA:CPU)."""
    import jax

    from layerkit.blocks.rev_block import _Conv2D

    ours = _Conv2D(6, kernel_size, padding="same", use_bias=False)
    ref = keras.layers.Conv2D(6, kernel_size, padding="same", use_bias=False)
    ours.build((2, 5, 7, 4))
    ref.build((2, 5, 7, 4))
    ref.set_weights(ours.get_weights())
    x = np.random.default_rng(0).normal(size=(2, 5, 7, 4)).astype("float32")

    def grads(layer):
        def loss(k, x):
            y, _ = layer.stateless_call([k], [], x)
            return (y ** 3).sum()
        return jax.grad(loss, argnums=(0, 1))(layer.kernel.value, x)

    for a, b in zip(grads(ours), grads(ref)):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-5, atol=1e-5)
