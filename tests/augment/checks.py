"""Checks every augmentation layer shares: config and `.keras` round trips, identity at
inference, output shape and dtype, eager and symbolic (uint8 and float32 inputs, as Keras's
`run_layer_test` checks them), and the same output inside `jax.jit`."""

import keras
import numpy as np

from tests.layer_checks import check_symbolic


def images(n=4, size=12, seed=0, dtype="uint8"):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype(dtype)


def check_augmentation(make_layer, tmp_path, x=None, inference_identity=True):
    x = images() if x is None else x
    layer = make_layer()
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
    for dtype in ("uint8", "float32"):
        for training in (True, False):
            check_symbolic(lambda **kw: type(layer).from_config({**config, **kw}), x.astype(dtype), training)

    model = keras.Sequential([keras.Input(x.shape[1:], dtype=str(x.dtype)), layer])
    out = np.asarray(model(x, training=True))
    assert out.shape == x.shape
    if inference_identity:
        np.testing.assert_array_equal(np.asarray(model(x, training=False)), x)
        assert out.dtype == x.dtype
        assert not np.array_equal(out, x), "training=True changed nothing"

    path = tmp_path / "augment.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.layers[0]) is type(layer)
    assert loaded.layers[0].get_config() == layer.get_config() | {"name": loaded.layers[0].name}
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)),
                               np.asarray(model(x, training=False)), atol=1e-5)
    return out
