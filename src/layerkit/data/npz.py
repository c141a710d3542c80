"""JPEG packs in `.npz` files: ``jpeg`` (all bytes), ``offsets`` (n+1), ``labels``, ``classes``.

Loaded without pickle; every array is checked so a malformed pack fails with a
clear message instead of yielding wrong images.
"""

import os
from dataclasses import dataclass

import numpy as np


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
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"jpeg", "offsets", "labels", "classes"} - set(z.files)
            if missing:
                raise ValueError(
                    f"{path}: not an image pack: missing arrays {sorted(missing)}; "
                    f"expected jpeg, offsets, labels, classes; found {sorted(z.files)}"
                )
            data, offsets, labels, classes = z["jpeg"], z["offsets"], z["labels"], z["classes"]
    except (OSError, EOFError) as err:  # zipfile.BadZipFile is an OSError subclass? no: catch below
        raise ValueError(f"{path}: cannot read as .npz: {err}") from err
    except ValueError:
        raise
    except Exception as err:  # BadZipFile, pickle refusal on object arrays
        raise ValueError(f"{path}: cannot read as .npz: {type(err).__name__}: {err}") from err
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
