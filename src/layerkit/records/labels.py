"""A labels file for each TFRecord shard, so that opening a data set reads no records.

``NAME.tfrecord.labels`` is a flat ``.npy`` int64 array: 4 numbers a record (its label, where
its image bytes start in the payload, how many there are, and the record's masked CRC-32C as
stored in its frame), then a 4-number trailer: `MAGIC`, the record count, the shard's size in
bytes and a CRC-32C over the rows and the shard's record offsets. It lies where
`layerkit.records.tfrecord.side_path` says (the folder's ``.layerkit/``, or the per-user
cache for a folder layerkit did not write). `write_records` and
`index_records` write one per shard.

`TFRecordSource` takes the labels from it instead of parsing every record at opening. The file
is trusted only as far as it can be checked without reading records: its trailer must match the
shard (size, record count, offsets) and its own rows (checksum), so an edited row, a truncated
file or a file left beside a rewritten shard is refused at opening (a warning; the shard is then
scanned) and the labels used before any read (class counts, sampling) are never silently wrong.
Every record read later is still checked against the record itself: its CRC against the row's,
and its parsed label and image bytes against the row's label and extent (`check_row`), so a row
is never served on trust. Labels files without the trailer (older layerkit) are rescanned.
"""

import os
import struct

import numpy as np

from layerkit import storage
from layerkit.records.example import DEFAULT_KEYS, parse_image_example
from layerkit.records.tfrecord import (FRAME_BYTES, LABELS_SUFFIX, MISSING, RecordError, crc32c, read_npy_int64,
                                       side_path, split_path, write_side_file)

COLUMNS = 4  # label, image start, image size, masked CRC
COLUMN_NAMES = ("label", "image start", "image size", "CRC")
MAGIC = 0x6C6B6C6231  # "lklb1": the trailer of a labels file with its checksum
TRAILER = 4  # MAGIC, records, shard bytes, checksum


def labels_path(shard, ours: bool | None = None):
    """Where `shard`'s labels file is (or goes): `layerkit.records.tfrecord.side_path`."""
    return side_path(shard, LABELS_SUFFIX, ours)


def scan_labels(reader, keys=DEFAULT_KEYS) -> np.ndarray:
    """The rows of `reader`'s shard, by reading and parsing every record once. A record that is
    not an image Example with a label >= 0 raises `RecordError` naming shard, record and offset."""
    rows = np.empty((len(reader), COLUMNS), np.int64)
    for lo in range(0, len(reader), 4096):
        chunk = range(lo, min(len(reader), lo + 4096))
        payloads, crcs = reader.read_many(chunk, with_crc=True)
        for j, payload, crc in zip(chunk, payloads, crcs.tolist()):
            try:
                encoded, label = parse_image_example(payload, keys)
                if label < 0:
                    raise ValueError(f"label {label} is negative")
            except ValueError as err:
                raise RecordError(str(err), reader.path, j, int(reader.offsets[j])) from err
            rows[j] = (label, payload.find(encoded), len(encoded), crc)  # any match slices these bytes
    return rows


def checksum(rows, offsets) -> int:
    """CRC-32C over the rows and the shard's record offsets (both as little-endian int64)."""
    rows = np.ascontiguousarray(rows, dtype="<i8")
    offsets = np.ascontiguousarray(offsets, dtype="<i8")
    return crc32c(rows.tobytes() + offsets.tobytes() + struct.pack("<q", len(rows)))


def write_labels(shard, rows, offsets, ours: bool | None = None) -> None:
    """Write `shard`'s labels file: `rows` (n, 4) and the trailer binding them to the shard's
    `offsets` (n + 1, the last one its size). `ours`: as `side_path`'s."""
    rows = np.asarray(rows, dtype="<i8").reshape(-1, COLUMNS)
    offsets = np.asarray(offsets, dtype="<i8")
    if len(offsets) != len(rows) + 1:
        raise ValueError(f"{shard}: {len(rows)} label rows for {len(offsets) - 1} records")
    trailer = np.asarray([MAGIC, len(rows), offsets[-1], checksum(rows, offsets)], "<i8")
    flat = np.concatenate([rows.reshape(-1), trailer])
    write_side_file(labels_path(shard, ours), lambda f: np.save(f, flat, allow_pickle=False))


def load_labels(reader, num_classes: int | None = None):
    """(rows, None) from the labels file of `reader`'s shard, or (None, why not).

    The file must fit the shard (record count, size, offsets) and its checksum its rows."""
    path = labels_path(reader.path)
    if not storage.is_remote(path) and not os.path.lexists(path):
        return None, "no labels file"
    n = len(reader)
    expected = n * COLUMNS + TRAILER
    limit = 256 + expected * 8  # an .npy header and the array; anything longer is not ours
    flat, why = read_npy_int64(path, limit, f"the labels of {n} records")
    if flat is None:
        return None, "no labels file" if why == MISSING else why
    if flat.shape == (n * COLUMNS,):
        return None, f"{path} has no checksum (written by an older layerkit); run `layerkit records index` to rewrite it"
    if flat.shape != (expected,):
        return None, f"{path} holds {len(flat)} numbers, expected {expected} for the shard's {n} records"
    rows, trailer = flat[: n * COLUMNS].reshape(n, COLUMNS), flat[n * COLUMNS :]
    magic, count, size, stored = (int(v) for v in trailer)
    if magic != MAGIC:
        return None, f"{path} has no valid trailer (found {magic:#x} where {MAGIC:#x} was expected)"
    if (count, size) != (n, reader.size):
        return None, (f"{path} was written for a shard of {count} records and {size} bytes; the shard has "
                      f"{n} records and {reader.size} bytes (the shard changed after its labels file)")
    computed = checksum(rows, reader.offsets)
    if stored != computed:
        return None, (f"{path} fails its checksum (stored {stored:#010x}, computed {computed:#010x}): "
                      "its rows were edited or the shard's records moved after it was written")
    payload = np.diff(reader.offsets) - FRAME_BYTES
    label, start, size, crc = rows.T
    if (start < 0).any() or (size < 0).any() or (start + size > payload).any():
        return None, f"{path} places images outside their records"
    if (crc < 0).any() or (crc > 0xFFFFFFFF).any():
        return None, f"{path} holds CRCs out of range"
    if (label < 0).any() or (num_classes is not None and (label >= num_classes).any()):
        return None, f"{path} holds labels out of range for {num_classes} classes"
    return rows, None


def check_row(row, payload, crc, path, index, offset, keys=DEFAULT_KEYS) -> bytes:
    """The image bytes of `payload` (record `index` of shard `path`, its stored CRC `crc`), once
    the record is checked against its labels-file `row` (label, image start, image size, CRC;
    a CRC of -1 is not checked): any difference raises `RecordError` naming the column and both
    values."""
    label, start, size, want_crc = (int(v) for v in row)
    if (want_crc < 0 or crc == want_crc) and isinstance(payload, bytes):
        try:
            encoded, got = parse_image_example(payload, keys)
        except ValueError:
            pass  # reported below
        else:
            if got == label and payload[start : start + size] == encoded:
                return encoded
    name = split_path(labels_path(path))[1]
    if want_crc >= 0 and crc != want_crc:
        raise RecordError(
            f"the record does not match {name} (its CRC is {crc:#010x}, the labels file says "
            f"{want_crc:#010x}): the shard changed after its labels file was written. Delete the "
            "labels file (the shard is then scanned when opened) or write the records again", path, index, offset)
    try:
        encoded, got = parse_image_example(payload, keys)
    except ValueError as err:
        raise RecordError(str(err), path, index, offset) from err
    if got != label:
        raise RecordError(f"the record's label is {got}, {name} says {label}: the labels file is wrong", path, index, offset)
    if payload[start : start + size] != encoded:
        where = payload.find(encoded)
        raise RecordError(
            f"{name} places the image at bytes {start}..{start + size} of the payload; the record's "
            f"{len(encoded)}-byte image lies at {where}..{where + len(encoded)}: the labels file is wrong",
            path, index, offset)
    return encoded
