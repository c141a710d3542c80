"""JPEG packs in `.npz` files: ``jpeg`` (all bytes), ``offsets`` (n+1), ``labels``, ``classes``.

Loaded without pickle; every array is checked so a malformed pack fails with a
clear message instead of yielding wrong images.
"""

import os
from dataclasses import dataclass

import numpy as np


class _PackError(Exception):
    """Raised inside load_npz only, to be given the pack's path."""


@dataclass(frozen=True)
class EncodedImages:
    """Encoded images held in one byte buffer: image i is ``data[offsets[i]:offsets[i+1]]``."""

    data: np.ndarray  # uint8, all encoded bytes
    offsets: np.ndarray  # int64, n + 1
    labels: np.ndarray  # int64, n
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def encoded(self, i: int) -> bytes:
        return self.data[self.offsets[i] : self.offsets[i + 1]].tobytes()


def load_npz(path) -> EncodedImages:
    path = os.fspath(path)
    if not os.path.isfile(path):  # a FIFO would block np.load, a folder raise IsADirectoryError
        what = "does not exist" if not os.path.lexists(path) else "is not a regular file"
        raise (FileNotFoundError if what == "does not exist" else ValueError)(f"{path}: {what}")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            missing = {"jpeg", "offsets", "labels", "classes"} - files
            if not missing:
                arrays = {}
                for name in ("jpeg", "offsets", "labels", "classes"):
                    try:
                        arrays[name] = z[name]
                    except ValueError as err:  # e.g. an object array, refused without pickle
                        raise _PackError(f"array {name!r}: {err}") from err
                data, offsets, labels, classes = (arrays[k] for k in ("jpeg", "offsets", "labels", "classes"))
    except _PackError as err:
        raise ValueError(f"{path}: cannot read as an image pack: {err}") from err
    except Exception as err:  # noqa: BLE001 - BadZipFile, OSError, EOFError, bad .npy headers
        raise ValueError(f"{path}: cannot read as .npz: {type(err).__name__}: {err}") from err
    if missing:
        raise ValueError(
            f"{path}: not an image pack: missing arrays {sorted(missing)}; "
            f"expected jpeg, offsets, labels, classes; found {sorted(files)}"
        )
    n = len(labels)
    if data.dtype != np.uint8 or data.ndim != 1:
        raise ValueError(f"{path}: 'jpeg' must be 1-D uint8, got {data.dtype} {data.shape}")
    if offsets.shape != (n + 1,) or not np.issubdtype(offsets.dtype, np.integer):
        raise ValueError(f"{path}: 'offsets' must be {n + 1} integers, got {offsets.dtype} {offsets.shape}")
    if n and (offsets[0] != 0 or offsets[-1] != len(data) or np.any(np.diff(offsets) <= 0)):
        raise ValueError(f"{path}: 'offsets' must rise strictly from 0 to len(jpeg)={len(data)}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: 'labels' must be integers, got {labels.dtype}")
    classes = tuple(str(c) for c in classes.tolist())
    if n and (labels.min() < 0 or labels.max() >= len(classes)):
        raise ValueError(
            f"{path}: labels must lie in [0, {len(classes)}) for {len(classes)} classes; "
            f"found {int(labels.min())}..{int(labels.max())}"
        )
    return EncodedImages(data, offsets.astype(np.int64), labels.astype(np.int64), classes)
