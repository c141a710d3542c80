"""ZCAWhitening: decorrelate pixels with the ZCA transform fitted on training data."""

import keras
import numpy as np
from keras import ops

from layerkit.augment._moments import flat_moments


@keras.saving.register_keras_serializable(package="layerkit")
class ZCAWhitening(keras.layers.Layer):
    """``(x - mean) @ W`` on each flattened example, ``W = U diag(1/sqrt(s + epsilon)) U^T``
    from the eigendecomposition ``U diag(s) U^T`` of the training covariance (as
    `ImageDataGenerator(zca_whitening=True)`). Fit with `adapt(data)`; `mean` and `W` are
    non-trainable weights, so `.keras` files keep them. Applied in training and inference.

    Args:
        epsilon: added to the eigenvalues; larger values whiten less (in the data's units
            squared: e.g. 1e-6 for images scaled to [0, 1], ~0.1 for 0..255 pixels).
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or epsilon < 0:
            raise ValueError(f"epsilon must be a number >= 0. Received: epsilon={epsilon!r}")
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        if len(input_shape) < 2 or any(d is None for d in input_shape[1:]):
            raise ValueError("ZCAWhitening expects inputs (batch, ...) with known example shape. "
                             f"Received: input_shape={tuple(input_shape)}")
        dim = int(np.prod(input_shape[1:]))
        self.mean = self.add_weight(shape=(dim,), initializer="zeros", trainable=False,
                                    name="mean")
        self.whitening = self.add_weight(shape=(dim, dim), initializer="identity",
                                         trainable=False, name="whitening")

    def adapt(self, data, steps=None):
        """Fit mean and W on `data`: an array (N, ...) or an iterable of batches."""
        mean, cov, shape = flat_moments(data, steps, name="ZCAWhitening.adapt")
        if not self.built:
            self.build(shape)
        elif self.mean.shape[0] != mean.shape[0]:
            raise ValueError(f"ZCAWhitening was built for {self.mean.shape[0]} features per "
                             f"example; adapt received examples of shape {shape[1:]}")
        eigenvalues, vectors = np.linalg.eigh(cov)
        eigenvalues = np.maximum(eigenvalues, 0.0)
        whitening = (vectors / np.sqrt(eigenvalues + self.epsilon)) @ vectors.T
        self.mean.assign(mean.astype("float32"))
        self.whitening.assign(whitening.astype("float32"))

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        flat = ops.reshape(x, (-1, self.mean.shape[0])) - self.mean
        return ops.reshape(ops.matmul(flat, self.whitening), ops.shape(x))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
