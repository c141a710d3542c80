"""RandomReflectTranslate: whole-pixel random translation with reflect fill, jit-friendly.

`keras.layers.RandomTranslation` sets ``supports_jit = False``, which makes Keras fall
back to an un-jitted train step; this layer is a gather, so the step stays compiled.
"""

import keras
from keras import ops

from layerkit.augment._shift import check_images, reflect_shift, same_dtype_spec


def _pair(factor):
    pair = tuple(factor) if isinstance(factor, (tuple, list)) else (factor, factor)
    if len(pair) != 2 or any(isinstance(f, bool) or not isinstance(f, (int, float))
                             or not 0 <= f < 1 for f in pair):
        raise ValueError("factor must be a float in [0, 1) or a (height, width) pair of them: "
                         f"the largest shift as a fraction of the size. Received: factor={factor!r}")
    return pair


@keras.saving.register_keras_serializable(package="layerkit")
class RandomReflectTranslate(keras.layers.Layer):
    """Shift each image by a random whole number of pixels, up to ``factor * size`` in each
    direction, filling with the reflection. Identity unless ``training=True``.

    Args:
        factor: a float in [0, 1), or (height_factor, width_factor).
        seed: seed of the layer's `keras.random.SeedGenerator`.
    """

    def __init__(self, factor, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.factor = _pair(factor)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        check_images(self, input_shape)
        self._max_shift = tuple(min(int(f * s), s - 1)
                                for f, s in zip(self.factor, input_shape[1:3]))

    def call(self, inputs, training=None):
        if not training or self._max_shift == (0, 0):
            return inputs
        n = ops.shape(inputs)[0]
        (my, mx), seed = self._max_shift, self.seed_generator
        dy = keras.random.randint((n,), -my, my + 1, seed=seed, dtype="int32")
        dx = keras.random.randint((n,), -mx, mx + 1, seed=seed, dtype="int32")
        return reflect_shift(inputs, dy, dx)

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_spec(self, inputs, training=None):
        return same_dtype_spec(self, inputs)  # uint8 in, uint8 out (the default spec says float32)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "seed": self.seed}
