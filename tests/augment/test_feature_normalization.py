import keras
import numpy as np
import pytest

from layerkit.augment import FeatureNormalization
from tests.augment.checks import images


def test_adapt_gives_zero_mean_unit_std_per_channel():
    x = images(n=20)
    layer = FeatureNormalization()
    layer.adapt(x)
    out = np.asarray(layer(x))
    np.testing.assert_allclose(out.mean((0, 1, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(out.std((0, 1, 2)), 1, atol=1e-4)
    np.testing.assert_allclose(layer.mean, x.mean((0, 1, 2)), rtol=1e-5)


def test_adapt_streams_batches_from_an_iterable():
    x = images(n=20)
    a, b = FeatureNormalization(), FeatureNormalization()
    a.adapt(x)
    b.adapt(((x[i : i + 6], np.zeros(6)) for i in range(0, 20, 6)))
    np.testing.assert_allclose(np.asarray(a.std), np.asarray(b.std), rtol=1e-5)


def test_center_only_and_known_statistics():
    x = images()
    out = np.asarray(FeatureNormalization(scale=False, mean=[1, 2, 3], std=[1, 1, 1])(x))
    np.testing.assert_allclose(out, x - np.array([1, 2, 3], "float32"))
    out = np.asarray(FeatureNormalization(mean=[0.0], std=[2.0], epsilon=0)(x))
    np.testing.assert_allclose(out, x / 2)


def test_keras_file_keeps_the_fitted_weights(tmp_path):
    x = images(n=10)
    layer = FeatureNormalization()
    layer.adapt(x)
    model = keras.Sequential([keras.Input(x.shape[1:], dtype="uint8"), layer])
    model.save(tmp_path / "norm.keras")
    loaded = keras.saving.load_model(tmp_path / "norm.keras")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-5)
    config = layer.get_config()
    assert FeatureNormalization.from_config(config).get_config() == config


@pytest.mark.parametrize("kwargs, match", [
    (dict(axis=0), "axis must be a non-zero integer"),
    (dict(center=False, scale=False), "does nothing"),
    (dict(mean=[1.0]), "pass both mean and std"),
    (dict(mean=[0.0], std=[-1.0]), "std must be >= 0"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FeatureNormalization(**kwargs)


def test_axis_outside_the_input_rank():
    with pytest.raises(ValueError, match="axis=5 is not a feature axis"):
        FeatureNormalization(axis=5)(images())
