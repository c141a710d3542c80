"""Affine resampling with flat gathers, in `keras.ops` only.

`keras.ops.image.affine_transform` on JAX goes through `map_coordinates` and runs at
~3k CIFAR images/s on 2 CPU cores; four `take_along_axis` gathers on the flattened
image do the same bilinear sampling ~10x faster. Conventions follow
`affine_transform`: ``transform`` rows are ``[a0, a1, a2, b0, b1, b2, c0, c1]`` with
c0 = c1 = 0; output pixel (x=col, y=row) reads input ``(a0 x + a1 y + a2, b0 x + b1 y + b2)``.
"""

from keras import ops


def _fold(k, size, fill_mode):
    """Map integer positions onto [0, size) the way `fill_mode` extends the image."""
    if fill_mode == "reflect":  # d c b a | a b c d | d c b a
        k = ops.mod(k, 2 * size)
        return ops.where(k >= size, 2 * size - 1 - k, k)
    if fill_mode == "mirror":  # d c b | a b c d | c b a
        if size == 1:
            return ops.zeros_like(k)
        k = ops.mod(k, 2 * size - 2)
        return ops.where(k >= size, 2 * size - 2 - k, k)
    if fill_mode == "wrap":
        return ops.mod(k, size)
    return ops.clip(k, 0, size - 1)  # nearest, and constant (masked by the caller)


def affine_sample(images, transform, interpolation="bilinear", fill_mode="reflect",
                  fill_value=0.0):
    """Resample float (N, H, W, C) `images` by one affine `transform` (N, 8) per image."""
    n, height, width, channels = ops.shape(images)[0], *images.shape[1:]
    ys, xs = ops.meshgrid(ops.arange(height, dtype=images.dtype),
                          ops.arange(width, dtype=images.dtype), indexing="ij")
    xs, ys = ops.reshape(xs, (1, -1)), ops.reshape(ys, (1, -1))  # (1, H*W)
    t = ops.cast(transform, images.dtype)
    src_x = t[:, 0:1] * xs + t[:, 1:2] * ys + t[:, 2:3]  # (N, H*W)
    src_y = t[:, 3:4] * xs + t[:, 4:5] * ys + t[:, 5:6]
    flat = ops.reshape(images, (n, height * width, channels))

    def read(row, col):
        r = _fold(row, height, fill_mode)
        c = _fold(col, width, fill_mode)
        values = ops.take_along_axis(flat, (r * width + c)[:, :, None], axis=1)
        if fill_mode == "constant":
            inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
            values = ops.where(inside[:, :, None], values, ops.cast(fill_value, values.dtype))
        return values

    if interpolation == "nearest":
        out = read(ops.cast(ops.round(src_y), "int32"), ops.cast(ops.round(src_x), "int32"))
    else:
        y0f, x0f = ops.floor(src_y), ops.floor(src_x)
        wy, wx = (src_y - y0f)[:, :, None], (src_x - x0f)[:, :, None]
        y0, x0 = ops.cast(y0f, "int32"), ops.cast(x0f, "int32")
        top = read(y0, x0) * (1 - wx) + read(y0, x0 + 1) * wx
        bottom = read(y0 + 1, x0) * (1 - wx) + read(y0 + 1, x0 + 1) * wx
        out = top * (1 - wy) + bottom * wy
    return ops.reshape(out, (n, height, width, channels))
