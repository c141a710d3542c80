"""PatchWhitening: fitted with adapt(), its output patches are white; the layer contract."""

import numpy as np
import pytest

from layerkit.augment import PatchWhitening, whitening_kernel
from tests.layer_checks import check_layer


def correlated_images(n=64, size=12, seed=0):
    """Smooth, channel-correlated float images: their patches are far from white."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, size + 2, size + 2, 1))
    x = (x[:, 1:-1, 1:-1] + x[:, :-2, 1:-1] + x[:, 1:-1, :-2]) / 3  # neighbours share noise
    mix = np.array([[1.0, 0.8, 0.5]])
    return (x * mix + 0.1 * rng.normal(size=(n, size, size, 3))).astype("float32")


@pytest.mark.parametrize("k", [1, 2, 3])
def test_whitening_layer_output_has_identity_covariance(k):
    images = correlated_images()
    layer = PatchWhitening(k, eps=0.0)
    layer.adapt(images)
    out = np.asarray(layer(images), dtype="float64")
    assert out.shape == (64, 12 - k + 1, 12 - k + 1, 2 * k * k * 3)
    half = out[..., : k * k * 3].reshape(-1, k * k * 3)  # the second half is its negative
    np.testing.assert_allclose(out[..., k * k * 3:], -out[..., : k * k * 3], atol=1e-5)
    np.testing.assert_allclose(half.T @ half / len(half), np.eye(k * k * 3), atol=2e-3)
    patches = np.concatenate([images[:, i:12 - k + 1 + i, j:12 - k + 1 + j] for i in range(k) for j in range(k)],
                             -1).reshape(-1, k * k * 3).astype("float64")
    assert np.abs(patches.T @ patches / len(patches) - np.eye(k * k * 3)).max() > 0.3  # it was not white before


def test_whitening_kernel_puts_the_largest_variance_first_and_eps_damps():
    images = correlated_images()
    kernel = np.asarray(whitening_kernel(images, 2, 5e-4)).reshape(12, 24)
    norms = np.linalg.norm(kernel[:, :12], axis=0)  # 1 / sqrt(eigenvalue + eps), largest eigenvalue first
    assert np.all(np.diff(norms) > 0)
    damped = np.asarray(whitening_kernel(images, 2, 10.0)).reshape(12, 24)
    assert np.linalg.norm(damped) < np.linalg.norm(kernel)


def test_patch_whitening_follows_the_layer_contract(tmp_path):
    check_layer(lambda: PatchWhitening(2), (8, 8, 3), expected_params=2 * 2 * 3 * 24 + 24,
                expected_output_shape=(7, 7, 24), tmp_path=tmp_path)
    layer = PatchWhitening(2)
    layer.adapt(correlated_images(8, 8))
    assert [w.name for w in layer.trainable_weights] == ["bias"]  # the kernel stays frozen
    with pytest.raises(ValueError, match="kernel_size must be a positive integer. Received: kernel_size=0"):
        PatchWhitening(0)
