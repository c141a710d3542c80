import numpy as np
import pytest

from layerkit.augment import RandomReflectCrop
from tests.augment.checks import check_augmentation, images


def _offset_of(out, image, padding):
    """The (row, col) offsets at which `out` is a crop of the reflect-padded `image`."""
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)), mode="reflect")
    h, w = image.shape[:2]
    return [(r, c) for r in range(2 * padding + 1) for c in range(2 * padding + 1)
            if np.array_equal(padded[r : r + h, c : c + w], out)]


def test_round_trips_identity_at_inference(tmp_path):
    check_augmentation(lambda: RandomReflectCrop(3, seed=1), tmp_path)


def test_each_image_is_a_crop_of_its_reflect_padded_self():
    x = images(n=32, size=10)
    out = np.asarray(RandomReflectCrop(4, seed=7)(x, training=True))
    offsets = [_offset_of(o, image, 4) for o, image in zip(out, x)]
    assert all(len(found) == 1 for found in offsets), offsets
    offsets = [found[0] for found in offsets]
    assert len(set(offsets)) > 10  # a new offset per image
    assert {r for r, _ in offsets} >= {0, 8} or len({r for r, _ in offsets}) >= 6


def test_float_input_keeps_dtype():
    x = images(dtype="float32")
    assert np.asarray(RandomReflectCrop(2)(x, training=True)).dtype == np.float32


@pytest.mark.parametrize("padding", [0, -1, 2.0, True])
def test_bad_padding(padding):
    with pytest.raises(ValueError, match=f"padding must be a positive integer. Received: padding={padding!r}"):
        RandomReflectCrop(padding)


def test_padding_too_large_and_wrong_rank():
    with pytest.raises(ValueError, match="smaller than the image height"):
        RandomReflectCrop(12)(images(size=12), training=True)
    with pytest.raises(ValueError, match=r"input_shape=\(4, 12, 12\)"):
        RandomReflectCrop(2)(images()[..., 0], training=True)
