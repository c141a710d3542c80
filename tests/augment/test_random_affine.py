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


def test_translation_only_moves_whole_images():
    # A pure shift keeps the mean of a smooth image roughly and the pixels' range.
    x = np.tile(np.linspace(0, 255, 16, dtype="float32")[None, None, :, None], (8, 16, 1, 3))
    out = np.asarray(RandomAffine(translation=0.2, seed=2)(x, training=True))
    assert out.min() >= 0 and out.max() <= 255
    assert not np.allclose(out, x)


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
