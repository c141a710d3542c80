"""Batched integer shifts with reflect fill, in `keras.ops` only (runs inside jit).

``reflect_shift(x, dy, dx)[n, i, j] = x[n, r(i + dy[n]), r(j + dx[n])]`` where `r`
reflects an index into range without repeating the edge (numpy's ``mode="reflect"``).
Reflect-padding by p then cropping at offset o is the shift ``o - p``.
"""

from keras import ops


def reflect_index(k, size):
    """Reflect integer positions `k` into [0, size) (valid for -size < k < 2 * size - 1)."""
    last = size - 1
    return last - ops.abs(last - ops.abs(k))


def reflect_shift(images, dy, dx):
    """Shift each image of (N, H, W, C) `images` by its own (dy[n], dx[n]) pixels."""
    height, width = images.shape[1], images.shape[2]
    rows = reflect_index(ops.arange(height, dtype="int32")[None, :] + dy[:, None], height)
    cols = reflect_index(ops.arange(width, dtype="int32")[None, :] + dx[:, None], width)
    out = ops.take_along_axis(images, rows[:, :, None, None], axis=1)
    return ops.take_along_axis(out, cols[:, None, :, None], axis=2)


def check_images(layer, input_shape):
    """Raise ValueError unless `input_shape` is (N, H, W, C) with known H and W."""
    if len(input_shape) != 4 or input_shape[1] is None or input_shape[2] is None:
        raise ValueError(f"{type(layer).__name__} expects images of shape (batch, height, "
                         f"width, channels) with known height and width. "
                         f"Received: input_shape={tuple(input_shape)}")


def same_dtype_spec(layer, inputs):
    """The symbolic output of a layer that returns its input's dtype: integer images (uint8)
    stay integer; floating inputs are the layer's compute dtype (Keras autocasts them)."""
    import keras

    dtype = layer.compute_dtype if keras.backend.is_float_dtype(inputs.dtype) else inputs.dtype
    return keras.KerasTensor(inputs.shape, dtype=dtype)
