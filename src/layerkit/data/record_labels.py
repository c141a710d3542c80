"""A labels file beside each TFRecord shard, so that opening a data set reads no records.

``NAME.tfrecord.labels`` is a flat ``.npy`` int64 array, 4 numbers a record: its label, where
its image bytes start in the payload, how many there are, and the record's masked CRC-32C as
stored in its frame. `write_records` writes one per shard. `TFRecordSource` takes the labels
from it instead of parsing every record at opening, and checks each record it reads later
against the stored CRC, so a labels file that no longer belongs to its shard (the shard was
rewritten in another order, say) is reported at the first read, never paired with the wrong
images. A missing or malformed file only means the shard is scanned as before.
"""

from pathlib import Path

import numpy as np

from layerkit.data.example import DEFAULT_KEYS, parse_image_example
from layerkit.data.tfrecord import FRAME_BYTES, LABELS_SUFFIX, RecordError, _atomic_write, read_npy_int64

COLUMNS = 4  # label, image start, image size, masked CRC


def labels_path(shard) -> Path:
    return Path(str(shard) + LABELS_SUFFIX)


def scan_labels(reader, keys=DEFAULT_KEYS) -> np.ndarray:
    """The rows of `reader`'s shard, by reading and parsing every record once. A record that is
    not an image Example with a label >= 0 raises `RecordError` naming shard, record and offset."""
    rows = np.empty((len(reader), COLUMNS), np.int64)
    for lo in range(0, len(reader), 4096):
        chunk = range(lo, min(len(reader), lo + 4096))
        for j, (payload, crc) in zip(chunk, reader.read_many(chunk, with_crc=True)):
            try:
                encoded, label = parse_image_example(payload, keys)
                if label < 0:
                    raise ValueError(f"label {label} is negative")
            except ValueError as err:
                raise RecordError(str(err), reader.path, j, int(reader.offsets[j])) from err
            rows[j] = (label, payload.find(encoded), len(encoded), crc)  # any match slices these bytes
    return rows


def write_labels(shard, rows) -> None:
    flat = np.asarray(rows, dtype="<i8").reshape(-1)
    _atomic_write(labels_path(shard), lambda f: np.save(f, flat, allow_pickle=False))


def load_labels(reader, num_classes: int | None = None):
    """(rows, None) from the labels file of `reader`'s shard, or (None, why not)."""
    path = labels_path(reader.path)
    if not path.is_file():
        return None, "no labels file"
    n = len(reader)
    limit = 256 + n * COLUMNS * 8  # an .npy header and the array; anything longer is not ours
    flat, why = read_npy_int64(path, limit, f"the labels of {n} records")
    if flat is None:
        return None, why
    if flat.shape != (n * COLUMNS,):
        return None, f"{path} holds {len(flat)} numbers, expected {n * COLUMNS} for the shard's {n} records"
    rows = flat.reshape(n, COLUMNS)
    payload = np.diff(reader.offsets) - FRAME_BYTES
    label, start, size, crc = rows.T
    if (start < 0).any() or (size < 0).any() or (start + size > payload).any():
        return None, f"{path} places images outside their records"
    if (crc < 0).any() or (crc > 0xFFFFFFFF).any():
        return None, f"{path} holds CRCs out of range"
    if (label < 0).any() or (num_classes is not None and (label >= num_classes).any()):
        return None, f"{path} holds labels out of range for {num_classes} classes"
    return rows, None
