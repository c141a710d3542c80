"""PatchWhitening: a frozen convolution that whitens k x k image patches, fitted with `adapt`.

The filters are the eigenvectors of the training patches' second-moment matrix, scaled by
1/sqrt(eigenvalue), each with its negative (airbench's first layer: a GELU after it keeps both
signs); a trainable bias follows. `whitening_kernel` computes the filters from images.
"""

import keras
from keras import ops


def whitening_kernel(images, kernel_size: int, eps: float):
    """Filters (k, k, C, 2 k k C) that whiten the k x k patches of float (N, H, W, C) `images`.

    The patch second-moment matrix ``P^T P / n`` has eigenvectors v_i and eigenvalues l_i;
    filter i is ``v_i / sqrt(l_i + eps)`` (largest l first) and filter i + kkC its negative, so
    that a GELU after it keeps both signs. Uses `keras.ops` only (runs inside jit).
    """
    k = kernel_size
    n, h, w, c = images.shape
    patches = ops.concatenate([images[:, i:h - k + 1 + i, j:w - k + 1 + j, :]  # (kh, kw, c) order
                               for i in range(k) for j in range(k)], axis=-1)
    patches = ops.reshape(ops.cast(patches, "float32"), (-1, k * k * c))
    covariance = ops.matmul(ops.transpose(patches), patches) / ops.cast(ops.shape(patches)[0], "float32")
    values, vectors = ops.eigh(covariance)  # ascending
    values, vectors = ops.flip(values, 0), ops.flip(vectors, 1)
    scaled = vectors / ops.sqrt(values + eps)[None, :]
    filters = ops.reshape(scaled, (k, k, c, k * k * c))
    return ops.concatenate([filters, -filters], axis=-1)


@keras.saving.register_keras_serializable(package="layerkit")
class PatchWhitening(keras.layers.Layer):
    """A k x k 'valid' convolution with a frozen kernel and a trainable bias; 2 k k C outputs.

    The kernel starts at zero: call `adapt(images)` (or assign `whitening_kernel(...)`) first.

    Args:
        kernel_size: the patch side k.
        eps: added to the eigenvalues when the kernel is computed by `adapt`.
    """

    def __init__(self, kernel_size=2, eps=5e-4, **kwargs):
        super().__init__(**kwargs)
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
            raise ValueError(f"kernel_size must be a positive integer. Received: kernel_size={kernel_size!r}")
        if not isinstance(eps, (int, float)) or not eps >= 0:
            raise ValueError(f"eps must be a number >= 0. Received: eps={eps!r}")
        self.kernel_size = kernel_size
        self.eps = eps

    def build(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError("PatchWhitening expects (batch, height, width, channels) with known channels. "
                             f"Received: input_shape={tuple(input_shape)}")
        k, c = self.kernel_size, input_shape[-1]
        self.filters = 2 * k * k * c
        self.kernel = self.add_weight(name="kernel", shape=(k, k, c, self.filters), initializer="zeros",
                                      trainable=False)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def adapt(self, images):
        """Set the kernel from float images (N, H, W, C), already normalised as the layer will see them."""
        images = ops.convert_to_tensor(images, "float32")
        if not self.built:
            self.build(images.shape)
        self.kernel.assign(whitening_kernel(images, self.kernel_size, self.eps))

    def call(self, inputs):
        x = ops.conv(inputs, ops.cast(self.kernel, inputs.dtype), padding="valid")
        return x + ops.cast(self.bias, x.dtype)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        k = self.kernel_size
        return (n, None if h is None else h - k + 1, None if w is None else w - k + 1, 2 * k * k * c)

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "eps": self.eps}
