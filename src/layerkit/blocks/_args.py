"""Argument checks shared by the blocks: every bad value is named in the error."""

from collections.abc import Sequence

import keras


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return value


def int_pair(name: str, value) -> tuple[int, int]:
    """An int or a pair of ints, all positive, as a 2-tuple."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, Sequence)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
    ):
        raise ValueError(
            f"`{name}` must be a positive integer or a pair of positive integers. "
            f"Received: {name}={value!r}"
        )
    return tuple(value)


def fraction(name: str, value) -> float:
    """A number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"`{name}` must be a number in [0, 1). Received: {name}={value!r}")
    return float(value)


def momentum(name: str, value) -> float:
    """A BatchNorm momentum in (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"`{name}` must be a number in (0, 1). Received: {name}={value!r}")
    return float(value)


def data_format(value) -> str:
    if value is None:
        return keras.config.image_data_format()
    if value not in ("channels_last", "channels_first"):
        raise ValueError(
            "`data_format` must be 'channels_last', 'channels_first' or None. "
            f"Received: data_format={value!r}"
        )
    return value


def channels(input_shape, fmt: str, layer_name: str) -> int:
    """The static channel count of a 4-D input, or a clear error."""
    if len(input_shape) != 4:
        raise ValueError(
            f"{layer_name} expects 4-D image batches (batch, height, width, channels) or "
            f"(batch, channels, height, width). Received input shape: {tuple(input_shape)}"
        )
    ch = input_shape[-1 if fmt == "channels_last" else 1]
    if ch is None:
        raise ValueError(
            f"{layer_name} needs a known channel count. Received input shape: {tuple(input_shape)}"
        )
    return int(ch)


def same_padded_shape(input_shape, filters: int, strides, fmt: str) -> tuple:
    """Output shape of a 'same'-padded convolution with `filters` outputs and `strides`."""

    def down(size, stride):
        return None if size is None else -(-size // stride)

    if fmt == "channels_last":
        b, h, w, _ = input_shape
        return (b, down(h, strides[0]), down(w, strides[1]), filters)
    b, _, h, w = input_shape
    return (b, filters, down(h, strides[0]), down(w, strides[1]))
