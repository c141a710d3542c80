"""Sources: every kind of stored image data behind one small interface.

A source has ``len(source)``, ``classes`` (names), ``labels`` (int64 array),
``image_shape`` ((H, W, 3) when known without decoding, else None) and one reader:
``encoded_many(indices) -> list[bytes]`` (encoded images, decoded by the pipeline)
or ``images(indices) -> uint8 (N, H, W, 3)`` (already decoded).

`open_dataset` turns a name (``sample``, ``cifar10``, ``flowers``) or a path into one.
"""

import os
from pathlib import Path

import numpy as np

from layerkit.data import embedded
from layerkit.data.npz import EncodedImages, load_npz
from layerkit.data.scan import IMAGE_SUFFIXES, ClassFolders, scan_class_folders  # noqa: F401 - IMAGE_SUFFIXES re-exported

NAMED = ("sample", "cifar10", "flowers")  # `open_dataset` names; "sample" ships in the package


def _check_labels(labels, n, classes, what):
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{what}: labels must be {n} integers, one per image. "
                         f"Received: labels of dtype {labels.dtype} and shape {labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= len(classes)):
        raise ValueError(f"{what}: labels must lie in [0, {len(classes)}) for {len(classes)} "
                         f"classes. Received: {int(labels.min())}..{int(labels.max())}")
    return labels.astype(np.int64)


class ArraySource:
    """Images already decoded in memory: uint8 (N, H, W, 3) and N integer labels."""

    def __init__(self, images, labels, classes=None):
        images = np.asarray(images)
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError("ArraySource expects uint8 images of shape (N, H, W, C). "
                             f"Received: dtype {images.dtype}, shape {images.shape}")
        labels = np.asarray(labels)
        if classes is None:
            k = int(labels.max()) + 1 if labels.size else 0
            classes = tuple(str(i) for i in range(k))
        self.classes = tuple(str(c) for c in classes)
        self.labels = _check_labels(labels, len(images), self.classes, "ArraySource")
        self._images = images
        self.image_shape = tuple(images.shape[1:])

    def __len__(self):
        return len(self.labels)

    def images(self, indices):
        return self._images[np.asarray(indices)]


class NpzSource:
    """A JPEG pack (`load_npz`): one byte buffer, offsets, labels, class names."""

    def __reduce__(self):  # a pack opened from a file is reopened, not copied, by worker processes
        return (NpzSource, (self.name,)) if self.name != "the image pack" else (NpzSource, (self._pack,))

    def __init__(self, pack):
        self.name = "the image pack"
        if not isinstance(pack, EncodedImages):
            self.name = str(pack)
            pack = load_npz(pack)
        self._pack = pack
        self.classes = pack.classes
        self.labels = pack.labels
        self.image_shape = None

    def __len__(self):
        return len(self.labels)

    def describe(self, i) -> str:
        return f"{self.name} image {int(i)}"

    def encoded_many(self, indices):
        data, offsets = self._pack.data, self._pack.offsets
        return [data[offsets[i] : offsets[i + 1]].tobytes() for i in np.asarray(indices)]


class FolderSource:
    """A folder with one subfolder of images per class, scanned by `layerkit.data.scan`
    (sorted subfolder names give the labels; hidden and AppleDouble files skipped). An empty or
    unreadable class folder raises `ClassFolderError`; ``FolderSource(err.found)`` opens the rest."""

    def __init__(self, root):
        found = root if isinstance(root, ClassFolders) else scan_class_folders(root)  # a scan's result, or scanned now
        self.root = found.root
        self.name = str(found.root)
        self.files = list(found.files)
        self.classes = found.classes
        self.labels = found.labels
        self.image_shape = None

    def __len__(self):
        return len(self.files)

    def describe(self, i) -> str:
        return str(self.files[int(i)])

    def encoded_many(self, indices):
        from layerkit.data.decode import read_image_file

        return [read_image_file(self.files[i]) for i in np.asarray(indices)]


class TFRecordSource:
    """TFRecord shards of image Examples: a folder (`layerkit records write`'s, or TensorFlow's)
    or one shard file, local or in a bucket (``gs://B/PREFIX``, ``s3://``, ``https://``: the
    same reader, `layerkit.records.ShardReader`).

    ``dataset.json`` gives the class names, the feature keys and the shard order; without
    it every file of the folder named as a shard (`layerkit.records.tfrecord.is_shard_name`)
    is read, in name order, with `keys`: an `ImageKeys`, a name (default, flowers, tfds) or
    ``encoded=KEY,label=KEY``; default: detected from the first record. `compression`: None
    (detected per shard), "GZIP", "ZLIB" or "" (none), as TensorFlow's ``compression_type``.
    Opening is `layerkit.records.dataset.open_records`, the verdict `records verify` and
    `records info` give too: a malformed dataset.json, or one whose per-shard record counts,
    shard sizes, classes or class counts differ from what the shards hold, a gap or a copy in a
    ``-of-N`` set of shards, raises `RecordError` at opening (naming the file and field, or the
    shard): records never go missing or appear unnoticed.

    The labels and where each image's bytes lie in its record come from the shard's labels
    file (`layerkit.records.labels`) when it has a valid one (its checksum and trailer
    fit the shard); otherwise each record is parsed once at opening. The first read of each
    record checks it against its row: stored CRC, parsed label and image bytes
    (`layerkit.records.labels.check_row`), so a wrong label or image is never served; a
    mismatch raises `RecordError` naming shard, record and byte offset. Later reads check the
    frame's CRCs (as every read does) and that the record's CRC is still the one it had when
    checked: its bytes unchanged, the image is sliced at the row's place without parsing again.
    """

    def __init__(self, folder, keys=None, compression=None):
        from layerkit import storage
        from layerkit.records.dataset import open_records

        folder = open_records(folder, keys, compression)  # the one verdict; side-file notes warned
        self.name = storage.redact(folder.path)
        self._shards = folder.shards
        self.keys = self._keys = folder.keys
        self._rows = folder.rows  # label, image start, image size, CRC (-1: not checked)
        self.labels_source = folder.labels_source  # per shard: "labels file" or "scan"
        self.classes = folder.classes
        self.labels = _check_labels(folder.labels, len(folder.labels), self.classes, self.name)
        self.image_shape = None
        self._checked = np.full(len(self.labels), -1, np.int64)  # the CRC each record had when checked against its row

    def __len__(self):
        return len(self.labels)

    def describe(self, i) -> str:
        """Where image `i` lies: shard, record number and byte offset."""
        from layerkit import storage

        s, j = self._shards.locate(int(i))
        return f"{storage.redact(self._shards.paths[s])}, record {j}, byte offset {int(self._shards.readers[s].offsets[j])}"

    def encoded_many(self, indices):
        from layerkit.records.example import _fast_image_label
        from layerkit.records.labels import check_row

        indices = np.asarray(indices, np.int64).reshape(-1)
        if indices.size and (indices.min() < -len(self) or indices.max() >= len(self)):
            raise IndexError(f"image index out of range for {len(self)} images")
        indices %= max(len(self), 1)
        payloads, crcs = self._shards.read_many(indices, with_crc=True)
        rows = self._rows[indices]
        # A record checked once against its row is served by slicing while its CRC stays the one
        # it had then (its bytes unchanged); any other is checked now.
        start, end = rows[:, 1], rows[:, 1] + rows[:, 2]
        out = [p[a:b] for p, a, b in zip(payloads, start.tolist(), end.tolist())]
        image_key, label_key = self._keys.encoded.encode(), self._keys.label.encode()
        for k in np.flatnonzero(self._checked[indices] != crcs).tolist():
            i, payload, crc, row = int(indices[k]), payloads[k], int(crcs[k]), rows[k].tolist()
            label, a, size, want = row
            fast = _fast_image_label(payload, image_key, label_key) if want < 0 or crc == want else None
            if fast is None or fast[1] != label or fast[0] != (a, a + size):
                s, j = self._shards.locate(i)  # check_row names what differs, or parses the unusual
                reader = self._shards.readers[s]
                out[k] = check_row(row, payload, crc, reader.path, j, int(reader.offsets[j]), self._keys)
            self._checked[i] = crc
        return out


class Subset:
    """Some examples of another source, in the order given (e.g. a validation split)."""

    def __init__(self, source, indices):
        indices = np.asarray(indices)
        if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"Subset expects a 1-D array of integer indices. Received: "
                             f"dtype {indices.dtype}, shape {indices.shape}")
        if indices.size and (indices.min() < 0 or indices.max() >= len(source)):
            raise ValueError(f"Subset indices must lie in [0, {len(source)}). Received: "
                             f"{int(indices.min())}..{int(indices.max())}")
        self.source = source
        self.name = getattr(source, "name", type(source).__name__)
        self.indices = indices.astype(np.int64)
        self.classes = source.classes
        self.labels = np.asarray(source.labels)[self.indices]
        self.image_shape = getattr(source, "image_shape", None)

    def __getattr__(self, name):
        # describe and one reader, as the source has them (a Subset of decoded arrays has no
        # encoded_many); looked up on use, so a Subset pickles (decoding worker processes)
        if name in ("describe", "encoded_many", "images") and "source" in self.__dict__ and hasattr(self.source, name):
            return _Through(self.source, name, self.indices)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __len__(self):
        return len(self.indices)


class _Through:
    """``source.NAME(indices[k])``: a Subset's describe, encoded_many or images."""

    def __init__(self, source, name, indices):
        self.method, self.indices = getattr(source, name), indices

    def __call__(self, k):
        return self.method(self.indices[int(k)] if np.ndim(k) == 0 else self.indices[np.asarray(k)])


def is_shard_folder(path: Path) -> bool:
    """A folder of TFRecord shards: a ``dataset.json``, or a file named as shards are
    (`layerkit.records.tfrecord.is_shard_name`: the one rule the readers use)."""
    from layerkit.records.tfrecord import is_shard_name

    return os.path.lexists(path / "dataset.json") or any(is_shard_name(p.name) and p.is_file() for p in path.iterdir())


def open_source(path, split="train", keys=None, compression=None):
    """A source for a file or folder: ``.npz`` pack, CIFAR-10 python batches (folder or
    ``.tar.gz``), TFRecord shards (a folder, or one shard file), or class subfolders. A URL
    (``gs://``, ``s3://``, ``https://``) is TFRecord shards: a bucket folder or one shard.

    A folder holding ``{split}.npz`` or a ``{split}/`` subfolder opens that split (CIFAR-10
    batches hold both splits: `split` picks one). `keys` and `compression` are for TFRecord
    shards (`TFRecordSource`); other sources ignore them.
    """
    from layerkit import storage
    from layerkit.data.cifar import CifarSource, is_cifar
    from layerkit.records.tfrecord import is_shard_name

    if storage.is_remote(path):
        return TFRecordSource(str(path), keys, compression)
    path = Path(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such file or folder: {path}")
    if is_cifar(path):
        return CifarSource(path, split)
    if path.is_file():
        if path.suffix == ".npz":
            return NpzSource(path)
        if is_shard_name(path.name):
            return TFRecordSource(path, keys, compression)
        raise ValueError(f"{path}: unknown image source; expected an .npz image pack, a TFRecord shard, "
                         "a folder (class subfolders or shards) or CIFAR-10 python batches "
                         "(cifar-10-batches-py/ or cifar-10-python.tar.gz)")
    if (path / f"{split}.npz").is_file():
        return NpzSource(path / f"{split}.npz")
    if (path / split).is_dir():
        return open_source(path / split, split, keys, compression)
    if is_shard_folder(path):
        return TFRecordSource(path, keys, compression)
    return FolderSource(path)


def has_split(name_or_path, split, data_dir=None) -> bool:
    """Whether the data set holds `split` itself: named sets always do; a path does when it is
    a folder with ``{split}.npz`` or a ``{split}/`` subfolder. A plain class folder, shard
    folder or ``.npz`` pack is one pool of images, with no test split of its own."""
    name = os.fspath(name_or_path)
    if name == "sample" or name in NAMED:
        return True
    path = Path(name)
    return path.is_dir() and ((path / f"{split}.npz").is_file() or (path / split).is_dir())


def search_dirs(data_dir=None):
    """Where named data sets are looked for, in order."""
    dirs = []
    if data_dir is not None:
        dirs.append(Path(data_dir))
    if os.environ.get("LAYERKIT_DATA"):
        dirs.append(Path(os.environ["LAYERKIT_DATA"]))
    dirs.append(Path.home() / ".keras" / "datasets")
    dirs.append(Path("..") / "shared" / "data")
    return dirs


def open_dataset(name_or_path="sample", split="train", data_dir=None, keys=None, compression=None):
    """A source for a named data set or a path. No download: named sets are found on disk.

    ``sample`` is the embedded 5k/1k CIFAR-10 sample. ``cifar10`` and ``flowers`` are looked
    for as ``NAME/{split}.npz`` or ``NAME/{split}/`` (shards or class folders) under, in
    order: `data_dir`, ``$LAYERKIT_DATA``, ``~/.keras/datasets``, ``../shared/data``.
    A path opens as `open_source` opens it; `keys` and `compression` apply to TFRecord shards
    (default: keys detected from the first record, compression from each shard's first bytes).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test'. Received: split={split!r}")
    name = os.fspath(name_or_path)
    if name == "sample":
        return NpzSource(embedded.load(split))
    if name in NAMED:
        looked = []
        for d in search_dirs(data_dir):
            for candidate in (d / name / f"{split}.npz", d / name / split):
                looked.append(str(candidate))
                if candidate.exists():
                    return open_source(candidate, split, keys, compression)
        raise FileNotFoundError(
            f"Data set {name!r} ({split}) not found; layerkit never downloads. Looked in: "
            + ", ".join(looked)
            + f". Provide it as {name}/{split}.npz (a JPEG pack: jpeg, offsets, labels, classes),"
            f" TFRecord shards or class subfolders in {name}/{split}/, under one of those "
            "folders (set LAYERKIT_DATA or pass data_dir)."
        )
    if os.sep in name or "/" in name or name.endswith(".npz") or Path(name).exists():
        if split == "test" and Path(name).exists() and not has_split(name, "test"):
            raise ValueError(f"{name} holds one pool of images, no test split ({name}/test/ or "
                             f"{name}/test.npz): never test on training images. `layerkit train` "
                             "carves a test split out of it (test_split=0.1), or pass --test-data PATH")
        return open_source(name, split, keys, compression)
    raise ValueError(f"Unknown data set {name!r}: expected one of {NAMED} or a path to an "
                     ".npz pack or a folder.")
