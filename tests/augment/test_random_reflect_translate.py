import numpy as np
import pytest

from layerkit.augment import RandomReflectTranslate
from tests.augment.checks import check_augmentation, images


def _shift(image, dy, dx):
    """numpy reference: reflect-pad by the shift, then crop."""
    p = max(abs(dy), abs(dx))
    padded = np.pad(image, ((p, p), (p, p), (0, 0)), mode="reflect")
    h, w = image.shape[:2]
    return padded[p + dy : p + dy + h, p + dx : p + dx + w]


def test_round_trips_identity_at_inference(tmp_path):
    check_augmentation(lambda: RandomReflectTranslate((0.25, 0.1), seed=3), tmp_path)


def test_shifts_stay_within_factor_and_match_numpy():
    x = images(n=24, size=10)
    out = np.asarray(RandomReflectTranslate((0.3, 0.0), seed=2)(x, training=True))
    shifts = []
    for o, image in zip(out, x):
        found = [dy for dy in range(-3, 4) if np.array_equal(_shift(image, dy, 0), o)]
        assert len(found) == 1
        shifts.append(found[0])
    assert len(set(shifts)) >= 4


def test_zero_factor_is_identity():
    x = images()
    np.testing.assert_array_equal(RandomReflectTranslate(0.0)(x, training=True), x)


@pytest.mark.parametrize("factor", [1.0, -0.1, (0.1,), "0.1", (0.1, 0.2, 0.3)])
def test_bad_factor(factor):
    with pytest.raises(ValueError, match="factor must be a float in"):
        RandomReflectTranslate(factor)
