"""Every image of a source read and decoded once, so that all bad images are named at once.

`check_images` returns each image's size and the bad ones (where, why). `apply_policy` then
applies ``on_bad_image``: ``error`` (the default) raises one `BadImagesError` naming every bad
image (path, or shard, record and offset) and its reason; ``skip`` leaves them out (a `Subset`)
and says how many. Without ``image_size``, images of different sizes are refused in one message
naming the sizes (height x width), an example file of each and the ``image_size`` key that
fixes it. `layerkit train` and `layerkit records write` both use this, so they give one verdict
on a folder.
"""

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from layerkit.data.decode import decode_image

ON_BAD_IMAGE = ("error", "skip")
CHUNK = 256  # images read per encoded_many call
SHOWN = 20  # bad images listed in a report (all are counted)


class BadImagesError(ValueError):
    """Images that cannot be read or decoded; ``bad`` lists (index, where, reason) of every one."""

    def __init__(self, message, bad):
        super().__init__(message)
        self.bad = bad


class DataProblemsError(ValueError):
    """Every problem of a run's data, found in one pass: ``problems`` and ``fixes`` (one fix per
    problem, each a change that works), ``bad`` the (index, where, reason) of every bad image."""

    def __init__(self, what, problems, fixes, bad=()):
        self.problems, self.fixes, self.bad = list(problems), list(fixes), list(bad)
        items = []
        for k, (problem, fix) in enumerate(zip(self.problems, self.fixes), 1):
            text = problem.replace("\n", "\n     ")
            items.append(f"{k}. {text}\n   fix: {fix}")
        n = len(items)
        super().__init__(f"{what}: {n} problem{'s' if n != 1 else ''}, found in one pass over the data; "
                         "nothing was trained:\n" + "\n".join(items))


@dataclass
class ImageCheck:
    """Sizes (height, width; -1 for a bad image) and the bad images of a source."""

    sizes: np.ndarray  # int64 (n, 2)
    bad: list = field(default_factory=list)  # (index, where, reason)

    def good(self) -> np.ndarray:
        return np.flatnonzero(self.sizes[:, 0] >= 0)

    def report(self) -> str:
        lines = [f"  {where}: {reason}" for _, where, reason in self.bad[:SHOWN]]
        if len(self.bad) > SHOWN:
            lines.append(f"  ... and {len(self.bad) - SHOWN} more")
        return "\n".join(lines)


def _where(source, i) -> str:
    describe = getattr(source, "describe", None)
    return describe(int(i)) if describe is not None else f"image {int(i)}"


def _read_one(source, i):
    try:
        return source.encoded_many([int(i)])[0], None
    except ValueError as err:  # DecodeError / RecordError: an unreadable file or record
        return None, _reason(source, i, err)


def _reason(source, i, err) -> str:
    text = str(err)
    where = _where(source, i)
    return text[len(where) + 2:] if text.startswith(where + ": ") else text  # the path is said once


def check_images(source, threads=None) -> ImageCheck:
    """Read and decode every image of `source` once (sources that hold decoded pixels, with
    ``images()``, are good by construction)."""
    n = len(source)
    if not hasattr(source, "encoded_many"):
        shape = source.image_shape if getattr(source, "image_shape", None) is not None else source.images([0])[0].shape
        return ImageCheck(np.tile(np.asarray(shape[:2], np.int64), (n, 1)))
    sizes = np.full((n, 2), -1, np.int64)
    bad = []
    threads = threads or min(4, os.cpu_count() or 1)

    def decode(item):
        i, blob = item
        try:
            return i, decode_image(blob).shape[:2], None
        except ValueError as err:
            return i, None, str(err)

    with ThreadPoolExecutor(threads) as pool:
        for lo in range(0, n, CHUNK):
            idx = np.arange(lo, min(n, lo + CHUNK))
            try:
                blobs = list(zip(idx, source.encoded_many(idx)))
            except ValueError:  # one unreadable file fails the chunk: read them one by one
                blobs = []
                for i in idx:
                    blob, why = _read_one(source, i)
                    if why is None:
                        blobs.append((i, blob))
                    else:
                        bad.append((int(i), _where(source, i), why))
            for i, shape, why in pool.map(decode, blobs):
                if why is None:
                    sizes[i] = shape
                else:
                    bad.append((int(i), _where(source, i), why))
    bad.sort()
    return ImageCheck(sizes, bad)


def bad_images_message(check: ImageCheck, n: int, what: str) -> str:
    return (f"{what}: {len(check.bad)} of {n} images cannot be used:\n{check.report()}\n"
            "Fix or remove them, or leave them out with on_bad_image=skip "
            "(`layerkit train ... on_bad_image=skip`, `layerkit records write ... --on-bad-image skip`).")


def mixed_sizes_message(source, check: ImageCheck, what: str) -> str:
    good = check.good()
    found = Counter(map(tuple, check.sizes[good].tolist()))
    first = {}
    for i in good:
        first.setdefault(tuple(check.sizes[i].tolist()), i)
    shown = "; ".join(f"{h}x{w}: {k} image{'s' if k > 1 else ''}, e.g. {_where(source, first[(h, w)])}"
                      for (h, w), k in found.most_common(5))
    more = f"; and {len(found) - 5} more sizes" if len(found) > 5 else ""
    return (f"{what}: the images differ in size (height x width) and image_size is not set: {shown}{more}. "
            "Pass image_size=N to resize (shorter side) and centre-crop every image to NxN "
            "(`layerkit train ... image_size=N`; in Python, Pipeline(image_size=(H, W))).")


def apply_policy(source, on_bad_image="error", image_size=None, what=None):
    """(the source, or a `Subset` of its good images, and the `ImageCheck`) under `on_bad_image`.

    ``error``: any bad image raises `BadImagesError` naming every one. ``skip``: they are left
    out. With `image_size` None, good images of different sizes raise a `ValueError`."""
    from layerkit.data.sources import Subset

    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(f"on_bad_image must be one of {', '.join(ON_BAD_IMAGE)}. Received: {on_bad_image!r}")
    what = what or getattr(source, "name", type(source).__name__)
    check = check_images(source)
    if check.bad and on_bad_image == "error":
        raise BadImagesError(bad_images_message(check, len(source), what), check.bad)
    good = check.good()
    if not len(good):
        raise ValueError(f"{what}: none of its {len(source)} images can be used:\n{check.report()}")
    if image_size is None and len({tuple(s) for s in check.sizes[good].tolist()}) > 1:
        raise ValueError(mixed_sizes_message(source, check, what))
    if check.bad:
        source = Subset(source, good)
    return source, check
