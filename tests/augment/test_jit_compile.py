"""A model holding the augmentation layers trains with ``jit_compile=True``, no fallback.

Keras falls back to an un-jitted train step (warning "Model doesn't support
`jit_compile=True`") when any layer has ``supports_jit = False``; docs/pipeline.md lists
the Keras 3.15 layers that do.
"""

import warnings

import keras
import numpy as np
import pytest

from layerkit.augment import (PRESETS, AlternatingFlip, Cutout, FeatureNormalization, RandomAffine,
                              RandomReflectCrop, RandomReflectTranslate, ZCAWhitening,
                              augmentation)
from tests.augment.checks import images

# Keras's own layers we recommend: they compile (checked below on the JAX backend).
KERAS_COMPILING = [
    lambda: keras.layers.RandomFlip("horizontal_and_vertical", seed=0),
    lambda: keras.layers.RandomSaturation(0.3, value_range=(0, 255), seed=0),
    lambda: keras.layers.RandomContrast(0.2, value_range=(0, 255), seed=0),
    lambda: keras.layers.RandomBrightness(0.1, value_range=(0, 255), seed=0),
    lambda: keras.layers.RandomHue(0.1, value_range=(0, 255), seed=0),
    lambda: keras.layers.RandomGrayscale(0.2, seed=0),
    lambda: keras.layers.RandomSharpness(0.2, value_range=(0, 255), seed=0),
]
# Keras 3.15 layers with supports_jit = False: a model holding one trains un-jitted.
KERAS_NOT_COMPILING = {
    "RandomRotation": lambda: keras.layers.RandomRotation(0.1),
    "RandomZoom": lambda: keras.layers.RandomZoom(0.1),
    "RandomTranslation": lambda: keras.layers.RandomTranslation(0.1, 0.1),
    "RandomShear": lambda: keras.layers.RandomShear(0.1),
    "RandomCrop": lambda: keras.layers.RandomCrop(28, 28),
    "RandomPerspective": lambda: keras.layers.RandomPerspective(),
}


def _fit_jitted(augment_layers, x, shape):
    model = keras.Sequential([
        keras.Input(shape, dtype="uint8"),
        *augment_layers,
        keras.layers.Conv2D(2, 3),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=True)
        history = model.fit(x, np.arange(len(x)) % 3, batch_size=4, epochs=1, verbose=0)
    assert not [w for w in caught if "jit_compile" in str(w.message)]
    assert model.jit_compile is True
    assert np.isfinite(history.history["loss"][0])
    return model


def test_every_augmentation_trains_jitted():
    x = images(n=8, size=12)
    zca, norm = ZCAWhitening(0.1), FeatureNormalization()
    zca.adapt(x)
    norm.adapt(x)
    layers = [RandomReflectCrop(2, seed=0), RandomReflectTranslate(0.2, seed=0),
              Cutout(3, seed=0), AlternatingFlip(2, seed=0), Cutout(3, fill_value=[1, 2, 3], seed=0),
              RandomAffine(15, 0.1, 0.1, seed=0),
              *(make() for make in KERAS_COMPILING), norm, zca]
    _fit_jitted(layers, x, x.shape[1:])


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_train_jitted(name):
    x = images(n=8, size=12)
    layers = augmentation(name, seed=1, steps_per_epoch=2)
    assert all(isinstance(layer, keras.layers.Layer) for layer in layers)
    assert (len(layers) == 0) == (name == "none")
    _fit_jitted(layers, x, x.shape[1:])


def test_unknown_preset():
    with pytest.raises(ValueError, match=r"Unknown augmentation preset 'imagenet': expected one of"):
        augmentation("imagenet")


@pytest.mark.parametrize("name", sorted(KERAS_NOT_COMPILING))
def test_keras_layers_that_do_not_compile(name):
    # If Keras starts compiling one of these, update docs/pipeline.md and the presets.
    assert KERAS_NOT_COMPILING[name]().supports_jit is False
