"""Settings fitted to the data: what a bare ``layerkit train --data FOLDER`` uses.

The default recipe (``sample``) leaves three keys to the data, and any recipe or run may do
the same; each rule sees the data after every image was read once (`layerkit.data.check`):

- ``image_size=0``: the images as stored when they all have one size with sides of
  `STORED_MIN` to `STORED_MAX` px; otherwise (sizes differ, or too small or large) the median
  of their shorter sides, rounded down to a multiple of 8 and kept within `FITTED_MIN` to
  `FITTED_MAX` px (every image's shorter side resized to it, then centre-cropped square).
- ``batch_size=0``: the largest power of two up to `BATCH_MAX` that still makes at least
  `MIN_STEPS` full batches of the training images in an epoch (at least 2, or the number of
  training images when fewer), rounded down to a multiple of the devices.
- ``model=auto``: the speed run's net, ``airbench94`` (patch whitening, three conv blocks),
  at widths 16/64/64 below `WIDE_FROM` training images and at its own 64/256/256 from there.

An explicit value of a key is always kept (``--batch-size``, ``image_size=N``, ``--model``).
The run prints what it chose and how to override it, and config.json records the chosen values,
so a resume, ``evaluate`` and ``predict`` use them.
"""

import numpy as np

STORED_MIN, STORED_MAX = 16, 256  # as stored: one size, sides within these
FITTED_MIN, FITTED_MAX = 32, 128  # fitted: the median shorter side, kept within these
BATCH_MAX = 256  # the default run's batch on the embedded sample
MIN_STEPS = 4  # full batches an epoch at least
WIDE_FROM = 10_000  # training images from which model=auto uses airbench94's full widths
SMALL_WIDTHS, FULL_WIDTHS = [16, 64, 64], [64, 256, 256]


def image_size(sizes) -> tuple[int | None, str]:
    """(the square side to resize to, or None for as stored; why) from (n, 2) heights and widths."""
    sizes = np.asarray(sizes).reshape(-1, 2)
    found = {tuple(s) for s in sizes.tolist()}
    if len(found) == 1:
        h, w = next(iter(found))
        if STORED_MIN <= min(h, w) and max(h, w) <= STORED_MAX:
            return (h if h == w else None), f"as stored: every image is {h}x{w}"
    side = int(np.median(sizes.min(axis=1))) // 8 * 8
    side = min(max(side, FITTED_MIN), FITTED_MAX)
    lo, hi = sizes.min(axis=1).min(), sizes.max(axis=1).max()
    why = (f"{len(found)} sizes from {lo} to {hi} px a side" if len(found) > 1
           else f"every image is {next(iter(found))[0]}x{next(iter(found))[1]}, outside {STORED_MIN}..{STORED_MAX} px")
    return side, (f"{why}: each resized (shorter side) and centre-cropped to {side}x{side}, the median shorter "
                  f"side within {FITTED_MIN}..{FITTED_MAX} px")


def batch_size(train_images: int, devices: int = 1) -> tuple[int, str]:
    """(the batch size, why) for `train_images` images over `devices` devices."""
    batch = BATCH_MAX
    while batch > 2 and batch * MIN_STEPS > train_images:
        batch //= 2
    batch = min(batch, max(train_images, 1))
    if devices > 1:
        batch = max(devices, batch // devices * devices)
    steps = train_images // batch
    rule = (f"the largest power of two up to {BATCH_MAX} making at least {MIN_STEPS}" if steps >= MIN_STEPS
            else f"too few images for {MIN_STEPS}: the smallest batch, 2" if batch >= 2
            else "one image a batch: there is only one")
    if devices > 1:
        rule += f", a multiple of the {devices} devices"
    return batch, f"{steps} full batch{'es' if steps != 1 else ''} of the {train_images} training images an epoch ({rule})"


def model(train_images: int) -> tuple[str, dict, str]:
    """(zoo name, model_options, why) for `train_images` training images."""
    widths = FULL_WIDTHS if train_images >= WIDE_FROM else SMALL_WIDTHS
    why = (f"{train_images} training images {'>=' if train_images >= WIDE_FROM else '<'} {WIDE_FROM:,}: "
           f"the speed run's net at widths {'/'.join(map(str, widths))}")
    return "airbench94", {"widths": widths}, why
