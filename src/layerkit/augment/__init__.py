"""Batch augmentation and fitted normalisation layers that run inside the jitted step.

Every layer uses `keras.ops` and `keras.random.SeedGenerator` only, so a model holding
them keeps ``jit_compile=True``; random layers act only when ``training=True``.
"""

from layerkit.augment.alternating_flip import AlternatingFlip
from layerkit.augment.cutout import Cutout
from layerkit.augment.feature_normalization import FeatureNormalization
from layerkit.augment.presets import PRESETS, augmentation
from layerkit.augment.random_affine import RandomAffine
from layerkit.augment.random_reflect_crop import RandomReflectCrop
from layerkit.augment.patch_whitening import PatchWhitening, whitening_kernel
from layerkit.augment.random_reflect_translate import RandomReflectTranslate
from layerkit.augment.zca_whitening import ZCAWhitening

__all__ = ["AlternatingFlip", "Cutout", "FeatureNormalization", "PRESETS", "PatchWhitening", "RandomAffine",
           "RandomReflectCrop", "RandomReflectTranslate", "ZCAWhitening", "augmentation", "whitening_kernel"]
