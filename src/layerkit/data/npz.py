"""JPEG packs in `.npz` files: ``jpeg`` (all bytes), ``offsets`` (n+1), ``labels``, ``classes``.

Loaded without pickle, each array's declared sizes read and bounded before it is inflated
(`read_member`: a zip bomb is refused unread); every array is checked so a malformed pack
fails with a clear message instead of yielding wrong images.
"""

import os
import zipfile
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


MAX_INFLATION = 8  # a member may inflate to 8x its compressed size (JPEG bytes: about 1x) ...
INFLATION_SLACK = 64 << 20  # ... plus this much (labels and offsets compress well)
_READ_CHUNK = 16 << 20
ARRAYS = ("jpeg", "offsets", "labels", "classes")


def read_member(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    """The `.npy` array `name` of an open `.npz`, its sizes read before its contents.

    Refused (`_PackError`) before anything is inflated or allocated: a member whose declared
    size is more than `MAX_INFLATION` times its compressed size plus `INFLATION_SLACK` (a zip
    bomb), an object dtype, or an `.npy` header whose shape and dtype do not fill exactly the
    member's declared size. Then exactly that many bytes are read, in chunks, into the array;
    a member that holds more or fails its CRC is refused too.
    """
    info = archive.getinfo(name + ".npy")
    bound = MAX_INFLATION * info.compress_size + INFLATION_SLACK
    if info.file_size > bound:
        raise _PackError(f"array {name!r} says it inflates to {info.file_size:,} bytes from {info.compress_size:,} "
                         f"(more than {MAX_INFLATION}x + {INFLATION_SLACK >> 20} MiB): refused unread, as a zip bomb")
    with archive.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = header(f)
        except ValueError as err:
            raise _PackError(f"array {name!r}: not an .npy header: {err}") from None
        if dtype.hasobject:
            raise _PackError(f"array {name!r}: object dtype {dtype} refused (no pickle)")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        nbytes = count * dtype.itemsize
        held = info.file_size - f.tell()
        if nbytes != held:
            raise _PackError(f"array {name!r}: its header says {dtype} of shape {shape} ({nbytes:,} bytes), the "
                             f"member holds {held:,} bytes")
        flat = np.empty(count, dtype)
        raw = flat.view(np.uint8) if nbytes else np.empty(0, np.uint8)
        got = 0
        while got < nbytes:
            n = f.readinto(memoryview(raw)[got : got + _READ_CHUNK])
            if not n:
                raise _PackError(f"array {name!r}: the member ends after {got:,} of {nbytes:,} bytes")
            got += n
        if f.read(1):  # also the end of the stream, where zipfile checks the CRC
            raise _PackError(f"array {name!r}: the member holds more bytes than it declares")
    return flat.reshape(shape[::-1]).transpose() if fortran else flat.reshape(shape)


def load_npz(path) -> EncodedImages:
    """The image pack at `path`: each array's sizes read and bounded before its contents
    (`read_member`), without pickle; every array then checked against the others."""
    path = os.fspath(path)
    if not os.path.isfile(path):  # a FIFO would block the zip reader, a folder raise IsADirectoryError
        what = "does not exist" if not os.path.lexists(path) else "is not a regular file"
        raise (FileNotFoundError if what == "does not exist" else ValueError)(f"{path}: {what}")
    try:
        with zipfile.ZipFile(path) as z:
            files = {n[:-4] for n in z.namelist() if n.endswith(".npy")}
            missing = set(ARRAYS) - files
            if not missing:
                data, offsets, labels, classes = (read_member(z, name) for name in ARRAYS)
    except _PackError as err:
        raise ValueError(f"{path}: cannot read as an image pack: {err}") from err
    except Exception as err:  # noqa: BLE001 - BadZipFile, OSError, EOFError, a CRC that fails
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
