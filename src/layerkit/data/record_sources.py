"""Where images come from before they become records: a class-folder tree, an `.npz` pack, CIFAR-10 batches.

Each reader returns a `Source`: class names, labels, and ``encoded(i)`` giving
image i's encoded bytes plus ``describe(i)`` naming it in error messages.

Folder and `.npz` images are passed on exactly as stored (a JPEG stays that JPEG).
CIFAR-10's python batches hold raw pixels and no encoding, so each image is
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from layerkit.data.decode import read_image_file
from layerkit.data.npz import load_npz

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_SPLITS = {"train": [f"data_batch_{k}" for k in range(1, 6)], "test": ["test_batch"]}
MAX_CIFAR_MEMBER_BYTES = 256 * 1024 * 1024  # one batch is ~31 MB


@dataclass(frozen=True)
class Source:
    """Images to write: image i is ``encoded(i)`` with class ``labels[i]``."""

    name: str
    classes: tuple[str, ...]
    labels: np.ndarray  # int64, n
    encoded: Callable[[int], bytes]
    describe: Callable[[int], str]

    def __len__(self) -> int:
        return len(self.labels)


# === Folder of class subfolders ===


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def from_folder(root) -> Source:
    """``root/<class>/<image>``: classes are the sorted subfolder names."""
    root = Path(root)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p))
    if not class_dirs:
        loose = [p.name for p in root.iterdir() if p.is_file() and _visible(p)]
        raise ValueError(
            f"{root}: no class subfolders found; expected {root}/<class name>/<image files>"
            + (f" (found {len(loose)} loose files such as {loose[0]!r})" if loose else " (the folder is empty)")
        )
    files, labels = [], []
    for label, d in enumerate(class_dirs):
        images = sorted(p for p in d.iterdir() if p.is_file() and _visible(p) and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise ValueError(
                f"{d}: class folder {d.name!r} holds no images (expected files ending in "
                f"{', '.join(sorted(IMAGE_SUFFIXES))}); remove it or add its images"
            )
        files += images
        labels += [label] * len(images)
    return Source(
        name=str(root),
        classes=tuple(d.name for d in class_dirs),
        labels=np.asarray(labels, np.int64),
        encoded=lambda i: read_image_file(files[i]),
        describe=lambda i: str(files[i]),
    )


# === .npz pack ===


def from_npz(path) -> Source:
    pack = load_npz(path)
    return Source(
        name=str(path),
        classes=pack.classes,
        labels=pack.labels,
        encoded=pack.encoded,
        describe=lambda i: f"{path} image {i}",
    )


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
        return [(str(src / n), (src / n).read_bytes()) for n in names]
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
                    raise ValueError(f"{src}: member {m.name} is {m.size} bytes, above {MAX_CIFAR_MEMBER_BYTES}")
                out.append((f"{src}:{m.name}", tar.extractfile(m).read()))
            return out
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ValueError(f"{src}: cannot read as a .tar.gz of CIFAR-10 batches: {err}") from err


def encode_png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def from_cifar(src, split="train") -> Source:
    """CIFAR-10 python batches (``cifar-10-batches-py/`` or its ``.tar.gz``), each image encoded as PNG."""
    if split not in CIFAR_SPLITS:
        raise ValueError(f"CIFAR-10 split must be one of {sorted(CIFAR_SPLITS)}, got {split!r}")
    src = Path(src)
    pixels, labels, names = [], [], []
    for name, data in _cifar_members(src, split):
        p, lab = load_cifar_batch(data, name)
        pixels.append(p)
        labels.append(lab)
        names += [f"{name} image {i}" for i in range(len(p))]
    pixels, labels = np.concatenate(pixels), np.concatenate(labels)
    return Source(
        name=f"{src} ({split})",
        classes=CIFAR10_CLASSES,
        labels=labels,
        encoded=lambda i: encode_png(pixels[i]),
        describe=lambda i: names[i],
    )


def is_cifar(src: Path) -> bool:
    if src.is_dir():
        return any((src / n).is_file() for names in CIFAR_SPLITS.values() for n in names)
    return src.name.endswith((".tar.gz", ".tgz"))


def open_source(src, split="train") -> Source:
    """Pick the reader for `src`: CIFAR-10 batches (folder or .tar.gz), an .npz pack, or a class-folder tree."""
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"image source {src} does not exist")
    if is_cifar(src):
        return from_cifar(src, split)
    if src.is_file() and src.suffix == ".npz":
        return from_npz(src)
    if src.is_dir():
        return from_folder(src)
    raise ValueError(
        f"{src}: unknown image source; expected a folder of class subfolders, an .npz pack, "
        "or CIFAR-10 python batches (cifar-10-batches-py/ or cifar-10-python.tar.gz)"
    )


def image_format(data: bytes) -> str:
    """Short format name from the leading bytes ("jpeg", "png", ...), as stored in image/format."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return "unknown"

