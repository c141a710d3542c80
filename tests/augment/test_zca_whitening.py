import keras
import numpy as np
import pytest

from layerkit.augment import ZCAWhitening


def _correlated(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4, 4, 2)) @ np.array([[2.0, 0.5], [0.0, 1.0]])
    return (x + x[:, :1, :1, :] * 0.8 + 3.0).astype("float32")


def test_whitened_fit_data_has_identity_covariance():
    x = _correlated()
    layer = ZCAWhitening(epsilon=1e-8)
    layer.adapt(x)
    flat = np.asarray(layer(x)).reshape(len(x), -1)
    before = np.cov(x.reshape(len(x), -1).T, bias=True)
    assert np.abs(before - np.eye(32)).max() > 0.5  # the data really was correlated
    np.testing.assert_allclose(flat.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(np.cov(flat.T, bias=True), np.eye(32), atol=1e-3)


def test_zca_keeps_images_close_to_the_original_basis():
    # ZCA (unlike PCA whitening) is symmetric: W == W.T
    layer = ZCAWhitening(1e-6)
    layer.adapt(_correlated())
    w = np.asarray(layer.whitening)
    np.testing.assert_allclose(w, w.T, atol=1e-4)


def test_adapt_from_batches_equals_adapt_from_array():
    x = _correlated()
    a, b = ZCAWhitening(1e-6), ZCAWhitening(1e-6)
    a.adapt(x)
    b.adapt([(x[:150], None), (x[150:], None)])
    np.testing.assert_allclose(np.asarray(a.whitening), np.asarray(b.whitening), rtol=1e-3, atol=1e-3)


def test_keras_file_keeps_the_fitted_weights(tmp_path):
    x = _correlated()
    layer = ZCAWhitening(1e-6)
    layer.adapt(x)
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    model.save(tmp_path / "zca.keras")
    loaded = keras.saving.load_model(tmp_path / "zca.keras")
    np.testing.assert_allclose(np.asarray(loaded(x[:5])), np.asarray(model(x[:5])), atol=1e-4)
    assert ZCAWhitening.from_config(layer.get_config()).get_config() == layer.get_config()


def test_bad_input():
    with pytest.raises(ValueError, match="epsilon must be a number >= 0. Received: epsilon=-1"):
        ZCAWhitening(-1)
    with pytest.raises(ValueError, match="at least 2 examples"):
        ZCAWhitening().adapt(np.zeros((1, 2, 2, 1)))
    layer = ZCAWhitening()
    layer.adapt(_correlated())
    with pytest.raises(ValueError, match="built for 32 features"):
        layer.adapt(np.zeros((5, 3, 3, 1)))
