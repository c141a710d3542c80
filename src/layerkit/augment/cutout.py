"""Cutout (DeVries & Taylor, 2017): blank one random square of each image."""

import keras
from keras import ops

from layerkit.augment._shift import check_images, same_dtype_spec


@keras.saving.register_keras_serializable(package="layerkit")
class Cutout(keras.layers.Layer):
    """Set a `size` square of each image to `fill_value`. Identity unless ``training=True``.
    Keeps the input dtype.

    Args:
        size: side of the square in pixels, or (height, width).
        fill_value: the value written into the square, or one value per channel (e.g. the
            mean pixel, which a later mean/std normalisation maps to 0).
        inside: False (DeVries & Taylor): the centre is uniform over the image and the square
            is clipped at the borders; True (airbench): the whole square lies inside the image.
        seed: seed of the layer's `keras.random.SeedGenerator`.
    """

    def __init__(self, size, fill_value=0, inside=False, seed=None, **kwargs):
        super().__init__(**kwargs)
        pair = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        if len(pair) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                                 for s in pair):
            raise ValueError("size must be a positive integer or a (height, width) pair of them. "
                             f"Received: size={size!r}")
        values = tuple(fill_value) if isinstance(fill_value, (tuple, list)) else (fill_value,)
        if not values or any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in values):
            raise ValueError(f"fill_value must be a number or a list of numbers, one per channel. "
                             f"Received: fill_value={fill_value!r}")
        fill_value = list(values) if isinstance(fill_value, (tuple, list)) else fill_value
        if not isinstance(inside, bool):
            raise ValueError(f"inside must be True or False. Received: inside={inside!r}")
        self.size = pair
        self.fill_value = fill_value
        self.inside = inside
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        check_images(self, input_shape)
        if isinstance(self.fill_value, list) and len(self.fill_value) != input_shape[-1]:
            raise ValueError(f"Cutout fill_value gives {len(self.fill_value)} values for "
                             f"{input_shape[-1]} channels. Received: fill_value={self.fill_value}")
        if self.inside and (self.size[0] > input_shape[1] or self.size[1] > input_shape[2]):
            raise ValueError(f"Cutout(inside=True) needs a square that fits the image. Received: "
                             f"size={self.size}, images of {input_shape[1]}x{input_shape[2]}")

    def call(self, inputs, training=None):
        if not training:
            return inputs
        n, height, width = ops.shape(inputs)[0], inputs.shape[1], inputs.shape[2]
        if self.inside:  # the top-left corner, so that the square fits
            y0 = keras.random.randint((n, 1), 0, height - self.size[0] + 1, seed=self.seed_generator, dtype="int32")
            x0 = keras.random.randint((n, 1), 0, width - self.size[1] + 1, seed=self.seed_generator, dtype="int32")
        else:
            cy = keras.random.randint((n, 1), 0, height, seed=self.seed_generator, dtype="int32")
            cx = keras.random.randint((n, 1), 0, width, seed=self.seed_generator, dtype="int32")
            y0, x0 = cy - self.size[0] // 2, cx - self.size[1] // 2
        rows = ops.arange(height, dtype="int32")[None, :]
        cols = ops.arange(width, dtype="int32")[None, :]
        in_rows = (rows >= y0) & (rows < y0 + self.size[0])  # (N, H)
        in_cols = (cols >= x0) & (cols < x0 + self.size[1])  # (N, W)
        mask = in_rows[:, :, None, None] & in_cols[:, None, :, None]
        fill = ops.cast(ops.convert_to_tensor(self.fill_value, "float32"), inputs.dtype)
        return ops.where(mask, fill, inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_spec(self, inputs, training=None):
        return same_dtype_spec(self, inputs)  # uint8 in, uint8 out (the default spec says float32)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "fill_value": self.fill_value,
                "inside": self.inside, "seed": self.seed}
