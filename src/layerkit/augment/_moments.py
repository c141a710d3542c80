"""Streaming first and second moments of image data, for the layers fitted with `adapt`.

`data` is an array (N, ...) or an iterable of batches (arrays, or (x, y) tuples such as a
`layerkit.data.Pipeline` yields); sums are accumulated in float64.
"""

import numpy as np


def batches(data, steps=None, name="adapt"):
    """Yield float64 arrays (n, ...) from an array or an iterable of batches."""
    if hasattr(data, "shape") and hasattr(data, "dtype"):  # a numpy array or backend tensor
        yield np.asarray(data, np.float64)
        return
    if not hasattr(data, "__iter__"):
        raise ValueError(f"{name} expects an array of images or an iterable of batches. "
                         f"Received: {type(data).__name__}")
    for k, batch in enumerate(data):
        if steps is not None and k >= steps:
            break
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        yield np.asarray(batch, np.float64)


def _checked_batches(data, steps, name):
    """Yield (batch, shape of the first batch), refusing rank < 2 and batches that change shape."""
    shape = None
    for x in batches(data, steps, name):
        if x.ndim < 2:
            raise ValueError(f"{name} expects batches of rank >= 2. Received shape {x.shape}")
        if shape is None:
            shape = x.shape
        elif x.shape[1:] != shape[1:]:
            raise ValueError(f"{name}: batches differ in shape: {shape[1:]} then {x.shape[1:]}")
        yield x, shape


def channel_moments(data, axis=-1, steps=None, name="adapt"):
    """Mean and variance along every axis but `axis`: arrays of the `axis` size."""
    count, total, total_sq, shape = 0, 0.0, 0.0, None
    for x, shape in _checked_batches(data, steps, name):
        x = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])
        count += len(x)
        total = total + x.sum(0)
        total_sq = total_sq + (x * x).sum(0)
    if count == 0:
        raise ValueError(f"{name} received no data")
    mean = total / count
    return mean, np.maximum(total_sq / count - mean * mean, 0.0), shape


def flat_moments(data, steps=None, name="adapt"):
    """Mean (D,) and covariance (D, D) of the flattened examples, and the example shape."""
    count, total, outer, shape = 0, 0.0, 0.0, None
    for x, shape in _checked_batches(data, steps, name):
        x = x.reshape(len(x), -1)
        count += len(x)
        total = total + x.sum(0)
        outer = outer + x.T @ x
    if count < 2:
        raise ValueError(f"{name} needs at least 2 examples. Received {count}")
    mean = total / count
    return mean, outer / count - np.outer(mean, mean), shape
