"""Named augmentation stacks used by recipes: ``augmentation("cifar")`` -> list of layers.

Every layer here compiles with XLA (``supports_jit``), so a model starting with these
trains with ``jit_compile=True``; each acts only when ``training=True``.
"""

import keras

from layerkit.augment.random_affine import RandomAffine
from layerkit.augment.random_reflect_crop import RandomReflectCrop


def _cifar(seed):
    # airbench / ResNet CIFAR recipe: horizontal flip, 4 px reflect-pad random crop.
    return [keras.layers.RandomFlip("horizontal", seed=seed), RandomReflectCrop(4, seed=seed)]


def _flowers(seed):
    # Keras-on-TPU flowers lab: flip and random saturation (0.5 = unchanged; 0.3..0.7).
    return [keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomSaturation((0.3, 0.7), value_range=(0, 255), seed=seed)]


def _svgg_scheme1(seed):
    # CIFAR tutorial scheme 1 (ImageDataGenerator): rotation 15 deg, shifts 0.1, zoom 0.1,
    # horizontal flip; one resampling with reflect fill.
    return [RandomAffine(rotation=15, translation=0.1, zoom=0.1, seed=seed),
            keras.layers.RandomFlip("horizontal", seed=seed)]


PRESETS = {
    "cifar": _cifar,
    "flowers": _flowers,
    "svgg-scheme1": _svgg_scheme1,
    "none": lambda seed: [],
}


def augmentation(name, seed=None):
    """A new list of augmentation layers for preset `name` (one of `PRESETS`)."""
    if name not in PRESETS:
        raise ValueError(f"Unknown augmentation preset {name!r}: expected one of {sorted(PRESETS)}")
    return PRESETS[name](seed)
