"""The speed-run net: patch whitening really whitens, partial identity init, parameter count."""

import keras
import numpy as np
import pytest

from layerkit.speedrun import PRESETS, smoke_config
from layerkit.speedrun.net import PartialDirac, PatchWhitening, build_net, whitening_kernel
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


def test_partial_dirac_starts_as_identity_on_the_first_channels():
    kernel = np.asarray(PartialDirac(seed=1)((3, 3, 4, 10)))
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype("float32")
    y = np.asarray(keras.ops.conv(x, kernel, padding="same"))
    np.testing.assert_allclose(y[..., :4], x, atol=1e-6)
    rest = kernel[..., 4:]
    assert np.abs(rest).max() <= 1 / np.sqrt(36) and rest.std() > 0.05  # uniform(+-1/sqrt(fan_in))
    with pytest.raises(ValueError, match=r"Received: shape=\(3, 4\)"):
        PartialDirac()((3, 4))


def test_net_counts_the_hand_formula_and_round_trips(tmp_path):
    config = PRESETS["short"]
    model = build_net(config)
    widths, cin, trainable = config.widths, 24, 24  # whitening bias
    for w in widths:
        trainable += 9 * cin * w + w + 9 * w * w + w  # two convs, two BN biases (no BN scale)
        cin = w
    trainable += widths[-1] * 10
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == trainable == 1_971_352

    small = build_net(smoke_config(PRESETS["long"]))
    assert small.get_layer("block0_conv3") is not None and small.get_layer("cutout") is not None
    x = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3)).astype("uint8")
    small.get_layer("whiten").adapt(np.random.default_rng(1).normal(size=(8, 32, 32, 3)))
    logits = np.asarray(small(x, training=True))
    assert logits.shape == (4, 10) and logits.dtype == np.float32 and np.isfinite(logits).all()
    path = tmp_path / "net.keras"
    small.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(small(x)), atol=1e-6)
