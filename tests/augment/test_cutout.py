import numpy as np
import pytest

from layerkit.augment import Cutout
from tests.augment.checks import check_augmentation, images


def test_round_trips_identity_at_inference(tmp_path):
    check_augmentation(lambda: Cutout(5, seed=4), tmp_path)


def test_one_clipped_square_per_image_rest_untouched():
    x = images(n=16, size=12) | 1  # no zero pixels before cutout
    out = np.asarray(Cutout((4, 6), seed=1)(x, training=True))
    sizes = []
    for o, image in zip(out, x):
        blank = np.all(o == 0, axis=-1)
        rows, cols = np.nonzero(blank.any(1))[0], np.nonzero(blank.any(0))[0]
        assert blank.sum() == len(rows) * len(cols)  # a rectangle
        assert len(rows) <= 4 and len(cols) <= 6 and blank.sum() > 0
        np.testing.assert_array_equal(o[~blank], image[~blank])
        sizes.append((len(rows), len(cols)))
    assert (4, 6) in sizes  # unclipped squares have the full size


def test_inside_squares_are_always_whole(tmp_path):
    check_augmentation(lambda: Cutout(5, inside=True, seed=4), tmp_path)
    x = images(n=32, size=12) | 1
    out = np.asarray(Cutout((4, 6), inside=True, seed=2)(x, training=True))
    corners = set()
    for o in out:
        blank = np.all(o == 0, axis=-1)
        rows, cols = np.nonzero(blank.any(1))[0], np.nonzero(blank.any(0))[0]
        assert (len(rows), len(cols)) == (4, 6) and blank.sum() == 24
        corners.add((rows[0], cols[0]))
    assert len(corners) > 10 and max(r for r, _ in corners) <= 8 and max(c for _, c in corners) <= 6
    with pytest.raises(ValueError, match=r"needs a square that fits the image. Received: size=\(13, 13\)"):
        Cutout(13, inside=True)(x, training=True)


def test_fill_value():
    out = np.asarray(Cutout(3, fill_value=7, seed=0)(images(dtype="float32"), training=True))
    assert (out == 7).any()


@pytest.mark.parametrize("size", [0, (3,), 2.5, (2, -1)])
def test_bad_size(size):
    with pytest.raises(ValueError, match="size must be a positive integer"):
        Cutout(size)
