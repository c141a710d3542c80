"""RandomAffine: rotation, shift and zoom in one resampling, and it compiles.

Keras's RandomRotation, RandomZoom, RandomTranslation and RandomShear set
``supports_jit = False`` (so a model holding one trains un-jitted). This layer builds one
(N, 8) transform per batch and samples with flat gathers (`_sample.affine_sample`, the
same result as `keras.ops.image.affine_transform`, ~10x faster on the CPU); it jits.
Its arguments follow `ImageDataGenerator` (degrees, fractions), as CIFAR tutorials use.
"""

import math

import keras
from keras import ops

from layerkit.augment._sample import affine_sample
from layerkit.augment._shift import check_images

FILL_MODES = ("reflect", "nearest", "constant", "wrap", "mirror")
INTERPOLATIONS = ("bilinear", "nearest")


def _fraction(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1). Received: {name}={value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package="layerkit")
class RandomAffine(keras.layers.Layer):
    """Rotate by up to ±`rotation` degrees, shift by up to ±`translation` of the size and
    scale by a factor in [1 - zoom, 1 + zoom], per image, about the centre. Identity unless
    ``training=True``; the output is float (the layer's compute dtype) either way.

    Args:
        rotation: largest rotation in degrees, in [0, 180].
        translation: largest shift as a fraction of height and width, in [0, 1).
        zoom: largest relative change of scale, in [0, 1).
        fill_mode: one of "reflect", "nearest", "constant", "wrap", "mirror".
        interpolation: "bilinear" or "nearest".
        fill_value: the value outside the image when fill_mode="constant".
        seed: seed of the layer's `keras.random.SeedGenerator`.
    """

    def __init__(self, rotation=0.0, translation=0.0, zoom=0.0, fill_mode="reflect",
                 interpolation="bilinear", fill_value=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(rotation, bool) or not isinstance(rotation, (int, float)) or not (
                0 <= rotation <= 180):
            raise ValueError(f"rotation must be degrees in [0, 180]. Received: rotation={rotation!r}")
        if fill_mode not in FILL_MODES:
            raise ValueError(f"fill_mode must be one of {FILL_MODES}. Received: fill_mode={fill_mode!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}. "
                             f"Received: interpolation={interpolation!r}")
        self.rotation = float(rotation)
        self.translation = _fraction(translation, "translation")
        self.zoom = _fraction(zoom, "zoom")
        self.fill_mode = fill_mode
        self.interpolation = interpolation
        self.fill_value = float(fill_value)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        check_images(self, input_shape)

    def call(self, inputs, training=None):
        images = ops.cast(inputs, self.compute_dtype)
        if not training:
            return images
        n, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
        u = keras.random.uniform((4, n), -1.0, 1.0, seed=self.seed_generator)
        angle = u[0] * (self.rotation * math.pi / 180.0)
        scale = 1.0 + u[1] * self.zoom
        tx, ty = u[2] * (self.translation * width), u[3] * (self.translation * height)
        # Output pixel (x, y) reads input (a0 x + a1 y + a2, b0 x + b1 y + b2):
        # input = scale * R(angle) (output - centre) + centre + shift.
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        a0, a1 = scale * ops.cos(angle), -scale * ops.sin(angle)
        b0, b1 = scale * ops.sin(angle), scale * ops.cos(angle)
        a2 = cx - a0 * cx - a1 * cy + tx
        b2 = cy - b0 * cx - b1 * cy + ty
        zeros = ops.zeros_like(a0)
        transform = ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        return affine_sample(images, transform, self.interpolation, self.fill_mode,
                             self.fill_value)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rotation": self.rotation,
                "translation": self.translation, "zoom": self.zoom, "fill_mode": self.fill_mode,
                "interpolation": self.interpolation, "fill_value": self.fill_value,
                "seed": self.seed}
