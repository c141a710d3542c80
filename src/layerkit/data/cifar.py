"""CIFAR-10's python batches as a source (`CifarSource`), read without running their pickles.

The batches hold raw pixels and no encoding, so for `records write` each image is
encoded as PNG (lossless). Those batches are Python pickles; they are read with
`ArrayUnpickler`, which can build only plain numpy arrays (no object dtypes),
``codecs.encode`` (bytes in Python 3 protocol-2 pickles) and the builtin values
the pickle opcodes make: any other global is refused, so a hostile file cannot
run code.
"""

import codecs
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_SPLITS = {"train": [f"data_batch_{k}" for k in range(1, 6)], "test": ["test_batch"]}
MAX_CIFAR_MEMBER_BYTES = 64 * 1024 * 1024  # one batch is ~31 MB; a larger file is refused by its size, unread


# === CIFAR-10 python batches ===


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as reconstruct  # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import _reconstruct as reconstruct  # numpy 1.26
    return reconstruct


def _dtype(*args):
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"refusing object dtype {dtype} in a pickle")
    return dtype


class _NdarrayClass:
    """What ``numpy.ndarray`` resolves to in a CIFAR pickle: usable only as the class argument
    of ``_reconstruct`` (how numpy pickles arrays); calling it, which would allocate an array
    of any size with no data behind it, is refused."""

    def __call__(self, *args, **kwargs):
        raise pickle.UnpicklingError(
            "refusing numpy.ndarray(...) in a pickle: it allocates an array whose data the file does "
            "not hold (numpy pickles arrays with _reconstruct and their bytes)")


_NDARRAY = _NdarrayClass()


class ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays of plain dtypes and builtin containers.

    Memory stays bounded by the file: ``_reconstruct`` may make only the empty arrays numpy
    pickles start from (at most as many bytes as the file holds), each array's bytes must then
    come from the file (numpy's ``__setstate__`` checks their length against the shape before
    allocating), ``numpy.ndarray`` cannot be called directly, and ``codecs.encode`` is allowed
    only as Python 3 writes bytes into protocol-2 pickles (latin-1), not with codecs that grow.
    """

    def __init__(self, file, *, max_bytes: int, **kwargs):
        super().__init__(file, **kwargs)
        self.max_bytes = max_bytes

    def _reconstruct(self, subtype, shape, dtype, *rest):
        if subtype is not _NDARRAY:
            raise pickle.UnpicklingError(f"refusing _reconstruct of {subtype!r}: only numpy.ndarray is allowed")
        try:
            size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        except (TypeError, ValueError, OverflowError) as err:
            raise pickle.UnpicklingError(f"bad _reconstruct arguments: {err}") from None
        if size < 0 or size > self.max_bytes:
            raise pickle.UnpicklingError(
                f"refusing an array of shape {shape} ({size} bytes) in a {self.max_bytes}-byte file")
        return _numpy_reconstruct()(np.ndarray, shape, dtype, *rest)

    @staticmethod
    def _encode(obj, encoding="utf-8", errors="strict"):
        if encoding not in ("latin1", "latin-1", "iso-8859-1") or not isinstance(obj, str):
            raise pickle.UnpicklingError(f"refusing codecs.encode with encoding {encoding!r} in a pickle")
        return codecs.encode(obj, encoding, errors)

    def find_class(self, module, name):
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): self._reconstruct,
            ("numpy", "ndarray"): _NDARRAY,
            ("numpy", "dtype"): _dtype,
            ("_codecs", "encode"): self._encode,  # bytes in protocol-2 pickles written by Python 3
        }
        try:
            return allowed[module, name]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only numpy arrays are allowed in CIFAR batches"
            ) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent ids in a pickle")


def load_cifar_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(pixels (n, 32, 32, 3) uint8, labels (n,) int64) from one CIFAR-10 python batch's bytes."""
    try:
        batch = ArrayUnpickler(io.BytesIO(data), max_bytes=len(data), encoding="bytes").load()
    except Exception as err:  # noqa: BLE001 - any failure to parse untrusted bytes is a bad file
        raise ValueError(f"{name}: not a CIFAR-10 python batch: {type(err).__name__}: {err}") from err
    if not isinstance(batch, dict):
        raise ValueError(f"{name}: expected a dict with b'data' and b'labels', got {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    pixels, labels = batch.get("data"), batch.get("labels")
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != 3072:
        got = f"{pixels.dtype} {pixels.shape}" if isinstance(pixels, np.ndarray) else type(pixels).__name__
        raise ValueError(f"{name}: b'data' must be a uint8 array of shape (n, 3072), got {got}")
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != len(pixels):
        raise ValueError(f"{name}: b'labels' must list {len(pixels)} labels, got {type(labels).__name__}")
    try:
        labels = np.asarray(labels, np.int64)
    except (TypeError, ValueError, OverflowError) as err:
        raise ValueError(f"{name}: b'labels' must be integers: {err}") from err
    if labels.ndim != 1:
        raise ValueError(f"{name}: b'labels' must be 1-D, got shape {labels.shape}")
    return pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _cifar_members(src: Path, split: str) -> list[tuple[str, bytes]]:
    names = CIFAR_SPLITS[split]
    if src.is_dir():
        missing = [n for n in names if not (src / n).is_file()]
        if missing:
            raise ValueError(f"{src}: CIFAR-10 batches {missing} missing for split {split!r}")
        return [(str(src / n), _read_batch(src / n)) for n in names]
    try:
        with tarfile.open(src, "r:gz") as tar:
            by_name = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            missing = [n for n in names if n not in by_name]
            if missing:
                raise ValueError(f"{src}: CIFAR-10 batches {missing} missing for split {split!r}")
            out = []
            for n in names:
                m = by_name[n]
                if m.size > MAX_CIFAR_MEMBER_BYTES:
                    raise _too_large(f"{src}: member {m.name}", m.size)
                out.append((f"{src}:{m.name}", tar.extractfile(m).read()))
            return out
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ValueError(f"{src}: cannot read as a .tar.gz of CIFAR-10 batches: {err}") from err


def _too_large(what, size) -> ValueError:
    return ValueError(f"{what} is {size:,} bytes, above the {MAX_CIFAR_MEMBER_BYTES:,} a CIFAR-10 python batch "
                      "can be (one is about 31 MB): not a CIFAR-10 batch")


def _read_batch(path: Path) -> bytes:
    """A batch file's bytes, its size checked first (a sparse 3 GiB file is refused unread)
    and the read bounded (a file that grows meanwhile is refused too)."""
    size = path.stat().st_size
    if size > MAX_CIFAR_MEMBER_BYTES:
        raise _too_large(path, size)
    with open(path, "rb") as f:
        data = f.read(size + 1)  # not MAX + 1: Python allocates what a read asks for
        if len(data) > size:
            data += f.read(MAX_CIFAR_MEMBER_BYTES + 1 - len(data))
    if len(data) > MAX_CIFAR_MEMBER_BYTES:
        raise _too_large(path, len(data))
    return data


def encode_png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


class CifarSource:
    """CIFAR-10 python batches (``cifar-10-batches-py/`` or its ``.tar.gz``), split `split`.

    They hold raw pixels: `images(indices)` gives them as they are (what the pipeline reads),
    `encoded_many(indices)` each as a PNG (lossless: what `records write` stores)."""

    def __init__(self, src, split="train"):
        if split not in CIFAR_SPLITS:
            raise ValueError(f"CIFAR-10 split must be one of {sorted(CIFAR_SPLITS)}, got {split!r}")
        src = Path(src)
        pixels, labels, self._names = [], [], []
        for name, data in _cifar_members(src, split):
            p, lab = load_cifar_batch(data, name)
            pixels.append(p)
            labels.append(lab)
            self._names.append((name, len(p)))
        self._pixels = np.concatenate(pixels)
        self._starts = np.cumsum([0] + [k for _, k in self._names])
        self.name = f"{src} ({split})"
        self.classes = CIFAR10_CLASSES
        self.labels = np.concatenate(labels)
        self.image_shape = (32, 32, 3)

    def __len__(self):
        return len(self.labels)

    def describe(self, i) -> str:
        b = int(np.searchsorted(self._starts, int(i), side="right")) - 1
        return f"{self._names[b][0]} image {int(i) - int(self._starts[b])}"

    def images(self, indices):
        return self._pixels[np.asarray(indices)]

    def encoded_many(self, indices):
        return [encode_png(self._pixels[i]) for i in np.asarray(indices)]


def is_cifar(src: Path) -> bool:
    """A folder holding CIFAR-10's python batches, or a ``.tar.gz`` of them."""
    src = Path(src)
    if src.is_dir():
        return any((src / n).is_file() for names in CIFAR_SPLITS.values() for n in names)
    return src.name.endswith((".tar.gz", ".tgz"))
