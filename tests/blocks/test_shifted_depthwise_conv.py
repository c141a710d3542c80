import keras
import numpy as np
import pytest

from layerkit.blocks import ShiftedDepthwiseConv2D
from tests.layer_checks import check_layer


def test_shifted_depthwise_contract(tmp_path):
    check_layer(lambda: ShiftedDepthwiseConv2D(3, 2, use_bias=True), (7, 7, 4), 9 * 4 + 4, (4, 4, 4), tmp_path)


@pytest.mark.parametrize("size, kernel, stride, padding", [
    (8, 3, 2, "same"), (9, 3, 2, "same"), (8, 5, 2, "same"), (7, 5, 1, "same"), (9, 3, 2, "valid"),
    (1, 5, 2, "same")])
def test_equals_keras_depthwise_conv(size, kernel, stride, padding):
    """The same weights give Keras's DepthwiseConv2D outputs (TensorFlow "same": the odd padding
    pixel at the bottom and right)."""
    x = np.random.default_rng(0).normal(size=(2, size, size + 1, 5)).astype("float32")
    ours = ShiftedDepthwiseConv2D(kernel, stride, padding=padding, use_bias=True, bias_initializer="ones")
    theirs = keras.layers.DepthwiseConv2D(kernel, stride, padding=padding, use_bias=True)
    y = ours(x)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(np.asarray(y), np.asarray(theirs(x)), atol=1e-5)


def test_refuses_what_it_does_not_compute():
    with pytest.raises(ValueError, match="depth_multiplier=1 only. Received: depth_multiplier=2"):
        ShiftedDepthwiseConv2D(3, depth_multiplier=2)
    with pytest.raises(ValueError, match="dilation_rate"):
        ShiftedDepthwiseConv2D(3, dilation_rate=2)
