"""Named augmentation stacks used by recipes: ``augmentation("cifar")`` -> list of layers.

Every layer here compiles with XLA (``supports_jit``), so a model starting with these
trains with ``jit_compile=True``; each acts only when ``training=True``.
"""

import keras

from layerkit.augment.alternating_flip import AlternatingFlip
from layerkit.augment.cutout import Cutout
from layerkit.augment.random_affine import RandomAffine
from layerkit.augment.random_reflect_crop import RandomReflectCrop
from layerkit.augment.random_reflect_translate import RandomReflectTranslate

CIFAR_MEAN_PIXEL = [125, 123, 114]  # per channel, 0..255: Cutout's fill (0 after mean/std normalisation)


def _steps(name, steps_per_epoch):
    if steps_per_epoch is None:
        raise ValueError(f"augmentation preset {name!r} flips on alternate epochs: pass steps_per_epoch")
    return steps_per_epoch


def _airbench94(seed, steps_per_epoch=None):
    # airbench94: alternating flips, then a random 2 px translation with reflect fill.
    return [AlternatingFlip(_steps("airbench94", steps_per_epoch), seed=seed),
            RandomReflectTranslate(2 / 32, seed=seed)]


def _airbench96(seed, steps_per_epoch=None):
    # airbench96: alternating flips, 4 px translations, a 12 px cutout square wholly inside.
    return [AlternatingFlip(_steps("airbench96", steps_per_epoch), seed=seed),
            RandomReflectTranslate(4 / 32, seed=seed),
            Cutout(12, fill_value=CIFAR_MEAN_PIXEL, inside=True, seed=seed)]


def _cifar(seed, steps_per_epoch=None):
    # airbench / ResNet CIFAR recipe: horizontal flip, 4 px reflect-pad random crop.
    return [keras.layers.RandomFlip("horizontal", seed=seed), RandomReflectCrop(4, seed=seed)]


def _flowers(seed, steps_per_epoch=None):
    # Keras-on-TPU flowers lab: flip and random saturation (0.5 = unchanged; 0.3..0.7).
    return [keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomSaturation((0.3, 0.7), value_range=(0, 255), seed=seed)]


def _svgg_scheme1(seed, steps_per_epoch=None):
    # CIFAR tutorial scheme 1 (ImageDataGenerator): rotation 15 deg, shifts 0.1, zoom 0.1,
    # horizontal flip; one resampling with reflect fill.
    return [RandomAffine(rotation=15, translation=0.1, zoom=0.1, seed=seed),
            keras.layers.RandomFlip("horizontal", seed=seed)]


PRESETS = {
    "cifar": _cifar,
    "flowers": _flowers,
    "svgg-scheme1": _svgg_scheme1,
    "airbench94": _airbench94,
    "airbench96": _airbench96,
    "none": lambda seed, steps_per_epoch=None: [],
}


def augmentation(name, seed=None, steps_per_epoch=None):
    """A new list of augmentation layers for preset `name` (one of `PRESETS`); presets with
    alternating flips need the run's `steps_per_epoch`."""
    if name not in PRESETS:
        raise ValueError(f"Unknown augmentation preset {name!r}: expected one of {sorted(PRESETS)}")
    return PRESETS[name](seed, steps_per_epoch)
