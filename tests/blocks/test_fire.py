import numpy as np
import pytest

from layerkit.blocks import Fire
from tests.layer_checks import check_layer


@pytest.mark.parametrize(
    "kwargs, params",
    [
        # squeeze 12->8 (+bias), expands 8->8 1x1 and 3x3 (+bias)
        (dict(squeeze=8, expand=16), (12 * 8 + 8) + (8 * 8 + 8) + (9 * 8 * 8 + 8)),
        # with BatchNorm: no conv bias, 4 BN weights per channel after each conv
        (dict(squeeze=8, expand=16, batch_norm=True, momentum=0.9),
         12 * 8 + 8 * 8 + 9 * 8 * 8 + 4 * (8 + 8 + 8)),
        # separable 3x3 expand: depthwise 9*8 + pointwise 8*8 + bias
        (dict(squeeze=8, expand=16, separable=True),
         (12 * 8 + 8) + (8 * 8 + 8) + (9 * 8 + 8 * 8 + 8)),
    ],
)
def test_fire_contract(kwargs, params, tmp_path):
    check_layer(lambda: Fire(**kwargs), (6, 6, 12), params, (6, 6, 16), tmp_path)


def test_fire_output_is_relu_of_two_branches():
    layer = Fire(4, 6)
    x = np.random.default_rng(0).normal(size=(1, 5, 5, 3)).astype("float32")
    y = np.array(layer(x))
    assert y.shape == (1, 5, 5, 6) and (y >= 0).all()
    s = np.maximum(np.array(layer.squeeze_conv(x)), 0)
    np.testing.assert_allclose(y[..., :3], np.maximum(np.array(layer.expand1_conv(s)), 0), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, name",
    [(dict(squeeze=0, expand=8), "squeeze"), (dict(squeeze=4, expand=7), "expand"),
     (dict(squeeze=4, expand=8, momentum=0), "momentum")],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Fire(**kwargs)
