import numpy as np
import pytest

from layerkit.augment import RandomAffine
from tests.augment.checks import check_augmentation, images


def test_round_trips_and_inference_is_a_cast(tmp_path):
    x = images()
    out = check_augmentation(lambda: RandomAffine(15, 0.1, 0.1, seed=1), tmp_path, x,
                             inference_identity=False)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert not np.allclose(out, x)
    np.testing.assert_array_equal(RandomAffine(15)(x), x.astype("float32"))


def test_no_range_is_identity_when_training():
    x = images()
    np.testing.assert_allclose(RandomAffine()(x, training=True), x, atol=1e-3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(rotation=200), "rotation must be degrees"),
    (dict(translation=1.5), "translation must be a number in"),
    (dict(zoom=-0.1), "zoom must be a number in"),
    (dict(fill_mode="edge"), "fill_mode must be one of"),
    (dict(interpolation="cubic"), "interpolation must be one of"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomAffine(**kwargs)


@pytest.mark.parametrize("fill_mode, interpolation", [
    ("reflect", "bilinear"), ("mirror", "bilinear"), ("wrap", "bilinear"), ("nearest", "bilinear"),
    ("constant", "bilinear"), ("reflect", "nearest"),
])
def test_sampler_matches_keras_affine_transform(fill_mode, interpolation):
    from keras import ops

    from layerkit.augment._sample import affine_sample

    x = images(n=3, size=9).astype("float32")
    angle, scale = np.array([0.3, -0.5, 1.2]), np.array([1.1, 0.8, 1.3])
    a0, a1, b0, b1 = scale * np.cos(angle), -scale * np.sin(angle), scale * np.sin(angle), scale * np.cos(angle)
    transform = np.stack([a0, a1, np.array([1.3, -2.1, 0.4]), b0, b1, np.array([-0.7, 2.6, 5.0]),
                          0 * a0, 0 * a0], axis=1).astype("float32")
    ours = affine_sample(x, transform, interpolation, fill_mode, fill_value=17.0)
    theirs = ops.image.affine_transform(x, transform, interpolation=interpolation,
                                        fill_mode=fill_mode, fill_value=17.0)
    if interpolation == "nearest":  # rounding of exact .5 positions may differ: compare most
        assert np.mean(np.isclose(ours, theirs, atol=1e-3)) > 0.97
    else:
        np.testing.assert_allclose(ours, theirs, atol=2e-3)
