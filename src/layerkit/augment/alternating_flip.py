"""AlternatingFlip: airbench's flips, each image mirrored on alternate epochs.

In the first epoch a pseudo-random half of the images is mirrored; from then on every image
flips every epoch, so any two consecutive epochs show each image both ways (airbench:
"alternating flip", worth ~0.2 points of CIFAR-10 accuracy over random flips in short runs).

airbench draws the first epoch's bit per image index. A layer inside the model sees pixels,
not indices, so the bit here is a seeded hash of the pixels: the parity of the sum of a
seeded random half of them. It is a fixed function of the image, so each image keeps its
bit from epoch to epoch, as required. The epoch comes from the layer's own step counter (a
non-trainable variable, saved with the model, so a resumed run continues the pattern) and
`steps_per_epoch`. Everything is `keras.ops`: the layer compiles inside the jitted step.
"""

import keras
import numpy as np
from keras import ops

from layerkit.augment._shift import check_images, same_dtype_spec


@keras.saving.register_keras_serializable(package="layerkit")
class AlternatingFlip(keras.layers.Layer):
    """Mirror each image left-right on alternate epochs (random first epoch). Identity unless
    ``training=True``; each training call counts one step.

    Args:
        steps_per_epoch: training steps (batches) in an epoch.
        seed: seed of the pixel hash that picks the first epoch's flips (None: 0).
    """

    def __init__(self, steps_per_epoch, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, (int, np.integer)) \
                or steps_per_epoch < 1:
            raise ValueError("steps_per_epoch must be a positive integer. "
                             f"Received: steps_per_epoch={steps_per_epoch!r}")
        self.steps_per_epoch = int(steps_per_epoch)
        self.seed = seed

    def build(self, input_shape):
        check_images(self, input_shape)
        self.step = self.add_weight(name="step", shape=(), dtype="int32", initializer="zeros",
                                    trainable=False)
        rng = np.random.default_rng([0 if self.seed is None else int(self.seed), 17])
        self._pixel_mask = rng.integers(0, 2, tuple(input_shape[1:])).astype("int32")

    def first_epoch_flips(self, images):
        """1 where an image is mirrored in epoch 0 (int32, one per image)."""
        pixels = ops.cast(ops.round(ops.cast(images, "float32")), "int32")
        keys = ops.sum(pixels * ops.convert_to_tensor(self._pixel_mask), axis=(1, 2, 3))
        return keys % 2

    def call(self, inputs, training=None):
        if not training:
            return inputs
        epoch = self.step // self.steps_per_epoch
        flip = (self.first_epoch_flips(inputs) + epoch) % 2
        self.step.assign_add(1)
        return ops.where(ops.reshape(flip, (-1, 1, 1, 1)) == 1, ops.flip(inputs, axis=2), inputs)

    def compute_output_spec(self, inputs, training=None):
        return same_dtype_spec(self, inputs)  # uint8 in, uint8 out (the default spec says float32)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "steps_per_epoch": self.steps_per_epoch, "seed": self.seed}
