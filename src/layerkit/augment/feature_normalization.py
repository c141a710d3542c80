"""FeatureNormalization: per-channel centring and scaling fitted on training data."""

import keras
import numpy as np
from keras import ops

from layerkit.augment._moments import channel_moments


@keras.saving.register_keras_serializable(package="layerkit")
class FeatureNormalization(keras.layers.Layer):
    """``(x - mean) / (std + epsilon)`` per channel (`axis`), as `ImageDataGenerator`'s
    ``featurewise_center`` and ``featurewise_std_normalization``, each switchable.

    What `keras.layers.Normalization` lacks: `adapt` streams uint8 batches (a
    `layerkit.data.Pipeline`, any iterable of arrays or (x, y) pairs) with float64 sums, so
    50k images never become one float array; centring and scaling can be turned on
    separately; and it takes the standard deviation, as data sheets quote it. Mean and std
    are non-trainable weights, so `.keras` files keep them.

    Args:
        axis: the feature axis of the input (default the channels, -1).
        center: subtract the mean.
        scale: divide by the standard deviation.
        epsilon: added to the standard deviation.
        mean, std: known statistics (one per feature), instead of calling `adapt`.
    """

    def __init__(self, axis=-1, center=True, scale=True, epsilon=1e-6, mean=None, std=None,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0:
            raise ValueError(f"axis must be a non-zero integer (0 is the batch axis). "
                             f"Received: axis={axis!r}")
        if not (center or scale):
            raise ValueError("FeatureNormalization with center=False and scale=False does nothing")
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or epsilon < 0:
            raise ValueError(f"epsilon must be a number >= 0. Received: epsilon={epsilon!r}")
        if (mean is None) != (std is None):
            raise ValueError(f"pass both mean and std, or neither. Received: mean={mean!r}, "
                             f"std={std!r}")
        if std is not None and np.any(np.asarray(std, float) < 0):
            raise ValueError(f"std must be >= 0. Received: std={std!r}")
        self.axis, self.center, self.scale, self.epsilon = axis, bool(center), bool(scale), epsilon
        self.init_mean = None if mean is None else [float(v) for v in np.ravel(mean)]
        self.init_std = None if std is None else [float(v) for v in np.ravel(std)]

    def build(self, input_shape):
        rank = len(input_shape)
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise ValueError(f"axis={self.axis} is not a feature axis of inputs of rank {rank} "
                             f"(input_shape={tuple(input_shape)})")
        size = input_shape[self.axis]
        if size is None:
            raise ValueError(f"axis {self.axis} of the input must have a known size. "
                             f"Received: input_shape={tuple(input_shape)}")
        self._shape = [1] * rank
        self._shape[self.axis] = size
        for name, init in (("mean", self.init_mean), ("std", self.init_std)):
            if init is not None and len(init) not in (1, size):
                raise ValueError(f"{name} must have 1 or {size} values for axis {self.axis}. "
                                 f"Received: {len(init)}")
        self.mean = self.add_weight(shape=(size,), initializer="zeros", trainable=False,
                                    name="mean")
        self.std = self.add_weight(shape=(size,), initializer="ones", trainable=False, name="std")
        if self.init_mean is not None:
            self.mean.assign(np.broadcast_to(self.init_mean, (size,)).astype("float32"))
            self.std.assign(np.broadcast_to(self.init_std, (size,)).astype("float32"))

    def adapt(self, data, steps=None):
        """Fit mean and std on `data`: an array (N, ...) or an iterable of batches."""
        mean, variance, shape = channel_moments(data, self.axis, steps,
                                                name="FeatureNormalization.adapt")
        if not self.built:
            self.build(shape)
        elif self.mean.shape[0] != mean.shape[0]:
            raise ValueError(f"FeatureNormalization was built for {self.mean.shape[0]} features; "
                             f"adapt received {mean.shape[0]} on axis {self.axis}")
        self.mean.assign(mean.astype("float32"))
        self.std.assign(np.sqrt(variance).astype("float32"))

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        if self.center:
            x = x - ops.reshape(self.mean, self._shape)
        if self.scale:
            x = x / (ops.reshape(self.std, self._shape) + self.epsilon)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "center": self.center,
                "scale": self.scale, "epsilon": self.epsilon, "mean": self.init_mean,
                "std": self.init_std}
