"""RandomReflectCrop: reflect-pad every image, then crop it back at a random offset."""

import keras
from keras import ops

from layerkit.augment._shift import check_images, reflect_shift, same_dtype_spec


@keras.saving.register_keras_serializable(package="layerkit")
class RandomReflectCrop(keras.layers.Layer):
    """Pad each image by `padding` pixels with reflection, then take a random crop of the
    original size (a new offset per image, the CIFAR augmentation). Identity unless
    ``training=True``. Keeps the input dtype (works on uint8).

    Args:
        padding: pixels added on each side before cropping; 0 < padding < height, width.
        seed: seed of the layer's `keras.random.SeedGenerator`.
    """

    def __init__(self, padding=4, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 1:
            raise ValueError(f"padding must be a positive integer. Received: padding={padding!r}")
        self.padding = padding
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        check_images(self, input_shape)
        if self.padding >= min(input_shape[1], input_shape[2]):
            raise ValueError(f"padding must be smaller than the image height and width. "
                             f"Received: padding={self.padding}, input_shape={tuple(input_shape)}")

    def call(self, inputs, training=None):
        if not training:
            return inputs
        n = ops.shape(inputs)[0]
        offsets = keras.random.randint((2, n), 0, 2 * self.padding + 1, seed=self.seed_generator,
                                       dtype="int32")
        return reflect_shift(inputs, offsets[0] - self.padding, offsets[1] - self.padding)

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_spec(self, inputs, training=None):
        return same_dtype_spec(self, inputs)  # uint8 in, uint8 out (the default spec says float32)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "seed": self.seed}
