"""A records folder: its ``dataset.json``, and `verify_records`, `records_info`, `index_records`.

A folder `write_records` made holds ``NAME-00000-of-0000N.tfrecord`` shards (each with its
``.index`` and ``.labels``) and ``dataset.json`` (classes, counts, shards, feature keys),
written last so a folder without it is an unfinished write. Each record is a
`tf.train.Example` with the image's original encoded bytes, its label, format, height and
width (names set by `ImageKeys`).
"""

import json
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from layerkit._atomic import remove_stale_temps
from layerkit.data.decode import decode_image, image_format
from layerkit.records.example import (
    DEFAULT_KEYS,
    ImageKeys,
    detect_keys,
    image_example_fields,
    image_fields,
    parse_example,
)
from layerkit.records.labels import COLUMN_NAMES, labels_path, load_labels, scan_labels, write_labels
from layerkit.records.tfrecord import (
    RecordError,
    ShardReader,
    masked_crc32c,
    read_regular,
    shard_paths,
)

DATASET_FILE = "dataset.json"
MAX_DATASET_JSON_BYTES = 64 * 1024 * 1024  # a folder of a million shards stays below this


class Progress:
    """One self-rewriting line on stderr, at most every `every` seconds; silent unless enabled."""

    def __init__(self, what: str, total: int, enabled: bool | None = None, every: float = 0.5):
        self.what, self.total, self.every = what, total, every
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.last = 0.0
        self.start = time.monotonic()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if self.enabled and (now - self.last >= self.every or done == self.total):
            self.last = now
            rate = done / max(now - self.start, 1e-9)
            print(f"\r{self.what}: {done}/{self.total} ({rate:.0f}/s)", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            print(file=sys.stderr, flush=True)


# === A records folder, with or without dataset.json ===


def records_folder(path, keys=None, compression=None):
    """(shard paths, dataset.json's checked fields or None, keys) of a records folder or one shard.

    The shards are those ``dataset.json`` lists when the folder has one (layerkit wrote it),
    else the folder's files named as shards (`layerkit.records.tfrecord.is_shard_name`), or
    the one file `path` names. `keys`: an `ImageKeys`, a name or spec (`ImageKeys.parse`), or
    None for dataset.json's, else those detected from the first record (`detect_keys`).
    """
    path = Path(path)
    info = None
    if path.is_dir() and os.path.lexists(path / DATASET_FILE):
        info = load_dataset_info(path)
        paths = [path / s["file"] for s in info["shards"]]
    else:
        paths = shard_paths(path)
    if keys is not None:
        keys = ImageKeys.parse(keys)
    elif info is not None:
        keys = info["image_keys"]
    else:
        keys = detect_folder_keys(paths, compression)
    return paths, info, keys


def detect_folder_keys(paths, compression=None) -> ImageKeys:
    """The key set of the first record of the first non-empty shard (`detect_keys`); default
    keys when every shard is empty. An unknown layout raises `RecordError` naming that record,
    the keys it holds and the ``--keys`` that would fit."""
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an invalid index is reported where it matters
            reader = ShardReader(path, compression=compression)
        with reader:
            if len(reader):
                return reader_keys(reader)
    return DEFAULT_KEYS


def reader_keys(reader) -> ImageKeys:
    """`detect_keys` of the first record of a non-empty shard; a `RecordError` names it."""
    try:
        return detect_keys(reader.read(0))
    except RecordError as err:
        if err.path is not None:
            raise
        raise RecordError(err.reason, reader.path, 0, 0) from None


# === Indexing shards another writer made ===


def index_records(folder, keys=None, progress: bool | None = None, compression=None) -> dict:
    """Write the offset index (where missing or stale) and the labels file of every shard in
    `folder`, e.g. shards TensorFlow wrote, so that opening the folder reads no record.

    The shards and keys are `records_folder`'s (keys: given, dataset.json's, else detected
    from the first record). Every record is read and parsed once; a record that is not an
    image Example with a label >= 0 raises `RecordError`. The index and labels file of a
    GZIP/ZLIB shard give offsets in its decompressed bytes.
    Returns ``{"shards": k, "records": n, "indexes_written": m, "keys": name}``.
    """
    from layerkit.records.tfrecord import write_index

    folder = Path(folder)
    remove_stale_temps(folder if folder.is_dir() else folder.parent)
    paths, _, keys = records_folder(folder, keys, compression)
    n = indexes = 0
    bar = Progress(f"indexing {folder}", len(paths), progress)
    for k, path in enumerate(paths):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a stale index is rewritten below
            reader = ShardReader(path, compression=compression)
        with reader:
            if reader.index_source != "index":
                write_index(path, np.array(reader.offsets), size=reader.size)
                indexes += 1
            rows = scan_labels(reader, keys)
            write_labels(path, rows, reader.offsets)
            n += len(rows)
        bar.update(k + 1)
    bar.close()
    return {"shards": len(paths), "records": n, "indexes_written": indexes, "keys": keys.describe()}


# === Reading back ===


REQUIRED_FIELDS = ("classes", "shards", "keys", "records")


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_dataset_info(info, path, required=REQUIRED_FIELDS) -> dict:
    """`info` (parsed from the dataset.json at `path`) with every field it has checked and
    ``image_keys`` added; a missing `required` field or a malformed one raises `RecordError`
    naming the file, the field, what it holds and what was expected."""

    def bad(field, expected, value):
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        return RecordError(f"field {field!r} must be {expected}. Received: {shown}", path)

    if not isinstance(info, dict):
        raise RecordError(f"expected a JSON object, got {type(info).__name__}", path)
    missing = [f for f in required if f not in info]
    if missing:
        raise RecordError(f"missing fields {missing}", path)
    if "classes" in info:
        classes = info["classes"]
        if (not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes)
                or len(set(classes)) != len(classes)):
            raise bad("classes", "a non-empty list of distinct class names (strings)", classes)
    keys = info.get("keys", {})
    if not isinstance(keys, dict):
        raise bad("keys", "an object of feature names (encoded, label, format, height, width)", keys)
    try:
        info["image_keys"] = ImageKeys(**keys)
    except (TypeError, ValueError) as err:
        raise bad("keys", f"feature names accepted by ImageKeys ({err})", keys) from None
    if "shards" in info:
        shards = info["shards"]
        if not isinstance(shards, list) or not shards:
            raise bad("shards", "a non-empty list of {\"file\": name, \"records\": count}", shards)
        for k, entry in enumerate(shards):
            if not isinstance(entry, dict):
                raise bad(f"shards[{k}]", "an object {\"file\": name, \"records\": count}", entry)
            name = entry.get("file")
            if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
                raise bad(f"shards[{k}].file", "a plain file name in the records folder", name)
            if not _count(entry.get("records")):
                raise bad(f"shards[{k}].records", "a record count (an int >= 0)", entry.get("records"))
            if "bytes" in entry and not _count(entry["bytes"]):
                raise bad(f"shards[{k}].bytes", "a size in bytes (an int >= 0)", entry["bytes"])
        names = [entry["file"] for entry in shards]
        if len(set(names)) != len(names):
            raise bad("shards", "a list naming each shard file once", names)
    if "records" in info:
        if not _count(info["records"]):
            raise bad("records", "a record count (an int >= 0)", info["records"])
        if "shards" in info and info["records"] != sum(e["records"] for e in info["shards"]):
            raise bad("records", f"the sum of the shards' counts, {sum(e['records'] for e in info['shards'])}",
                      info["records"])
    if "counts" in info:
        counts = info["counts"]
        if not isinstance(counts, dict) or not all(_count(v) for v in counts.values()):
            raise bad("counts", "an object of class name: image count (an int >= 0)", counts)
        unknown = set(counts) - set(info.get("classes", counts))
        if unknown:
            raise bad("counts", f"counts of the classes listed in 'classes' (unknown: {sorted(unknown)})", counts)
        if "records" in info and sum(counts.values()) != info["records"]:
            raise bad("counts", f"class counts summing to 'records' ({info['records']})", counts)
    return info


def read_dataset_info(path, required=REQUIRED_FIELDS) -> dict:
    """dataset.json at `path` (a regular file), parsed and checked (`check_dataset_info`)."""
    try:
        text = read_regular(path, MAX_DATASET_JSON_BYTES, "a dataset.json")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found: not a records folder written by write_records (or unfinished)") from None
    if len(text) > MAX_DATASET_JSON_BYTES:
        raise RecordError(f"larger than {MAX_DATASET_JSON_BYTES} bytes: not a dataset.json", path)
    try:
        info = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise RecordError(f"not valid JSON: {err}", path) from err
    return check_dataset_info(info, path, required)


def load_dataset_info(out_dir) -> dict:
    """dataset.json of a records folder, checked for the fields the readers need."""
    return read_dataset_info(Path(out_dir) / DATASET_FILE)


def _records(paths, info, compression=None):
    """Yield (reader, local index, offset, payload) over every record, shard by shard; with
    dataset.json's `info`, checking each shard's count and that it has a valid index."""
    for k, path in enumerate(paths):
        if not os.path.lexists(path):
            raise RecordError(f"shard listed in {DATASET_FILE} is missing", path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an invalid index is reported below, not warned about
            reader = ShardReader(path, compression=compression)
        with reader:
            if info is not None:
                if len(reader) != info["shards"][k]["records"]:
                    raise RecordError(f"holds {len(reader)} records, {DATASET_FILE} says {info['shards'][k]['records']}", path)
                if reader.index_source != "index":
                    raise RecordError(f"no valid index, the shard had to be scanned: {reader.index_source}", path)
            elif reader.index_source.startswith("scan ("):
                raise RecordError(f"invalid index: {reader.index_source[6:-1]}", path)
            for j in range(len(reader)):
                offset = int(reader.offsets[j])
                yield reader, j, offset, reader.read(j)


def verify_records(out_dir, decode: bool = True, progress: bool | None = None, keys=None, compression=None) -> dict:
    """Check every CRC, that every payload is an image Example, every label in range, every image
    decodes, and that each shard's labels file (where there is one) agrees with its records.

    `out_dir` is a records folder, with or without ``dataset.json`` (shards TensorFlow wrote),
    or one shard; `keys` and `compression` as `records_folder` and `ShardReader` take them
    (None: dataset.json's or detected). Without dataset.json, labels must be >= 0.
    Returns ``{"records": n, "shards": k, "keys": name, "classes": c}``; raises `RecordError`
    naming the shard, record index and byte offset of the first fault.
    """
    paths, info, keys = records_folder(out_dir, keys, compression)
    classes = info["classes"] if info is not None else None
    bar = Progress(f"verifying {out_dir}", info["records"] if info else 0, progress)
    n, counts = 0, Counter()
    label_rows = {}  # shard path -> its labels file's rows, or None without one
    for reader, j, offset, payload in _records(paths, info, compression):
        if reader.path not in label_rows:
            rows, why = load_labels(reader, len(classes) if classes else None)
            if rows is None and why != "no labels file":
                raise RecordError(f"invalid labels file: {why}", reader.path)
            label_rows[reader.path] = rows
        rows = label_rows[reader.path]
        try:
            fields = image_fields(parse_example(payload), keys)  # every feature parsed, not just ours
            label = fields["label"]
            if classes is not None and not 0 <= label < len(classes):
                raise ValueError(f"label {label} out of range for {len(classes)} classes")
            if label < 0:
                raise ValueError(f"label {label} is negative")
            if rows is not None:
                row = [int(v) for v in rows[j]]
                if payload[row[1] : row[1] + row[2]] == fields["encoded"]:
                    start, size = row[1], row[2]  # the image's bytes may also occur elsewhere
                else:
                    start, size = payload.find(fields["encoded"]), len(fields["encoded"])
                actual = [label, start, size, masked_crc32c(payload)]
                differ = [f"{COLUMN_NAMES[c]} column: the record has {actual[c]}, the file says {row[c]}"
                          for c in range(len(row)) if actual[c] != row[c]]
                if differ:
                    raise ValueError(f"the record disagrees with its labels file {labels_path(reader.path).name} "
                                     f"({'; '.join(differ)})")
            if decode:
                pixels = decode_image(fields["encoded"])
                stored = (fields.get("height", pixels.shape[0]), fields.get("width", pixels.shape[1]))
                if stored != pixels.shape[:2]:
                    raise ValueError(f"records height x width {stored}, the image decodes to {pixels.shape[:2]}")
        except ValueError as err:
            raise RecordError(str(err), reader.path, j, offset) from err
        counts[classes[label] if classes else label] += 1
        n += 1
        bar.update(n)
    bar.close()
    if info is not None:
        if n != info["records"]:
            raise RecordError(f"{n} records found, {DATASET_FILE} says {info['records']}", Path(out_dir) / DATASET_FILE)
        if "counts" in info and dict(counts) != {c: k for c, k in info["counts"].items() if k}:
            raise RecordError(f"class counts {dict(counts)} differ from {DATASET_FILE}'s {info['counts']}", Path(out_dir) / DATASET_FILE)
    elif n == 0:
        raise RecordError("the shards hold no records", out_dir)
    return {"records": n, "shards": len(paths), "keys": keys.describe(),
            "classes": len(classes) if classes else max(counts) + 1}


def records_info(out_dir, keys=None, compression=None) -> dict:
    """Counts per class, image sizes and formats, and bytes, read from the records themselves.

    Without dataset.json the classes are the labels found, named by their numbers, and a
    format or size not stored in the records is taken from the image's own header."""
    paths, info, keys = records_folder(out_dir, keys, compression)
    classes = info["classes"] if info is not None else None
    counts, sizes, formats = Counter(), Counter(), Counter()
    image_bytes = n = 0
    shards = []
    for reader, j, offset, payload in _records(paths, info, compression):
        if j == 0:
            shards.append({"file": reader.path.name, "records": len(reader), "bytes": reader.path.stat().st_size,
                           "compression": reader.compression or "none"})
        try:
            fields = image_example_fields(payload, keys)
        except ValueError as err:
            raise RecordError(str(err), reader.path, j, offset) from err
        label = fields["label"]
        if classes is not None:
            counts[classes[label] if 0 <= label < len(classes) else f"<label {label}>"] += 1
        else:
            counts[label] += 1
        if "height" not in fields or "width" not in fields:
            fields = _from_header(fields)
        sizes[f"{fields['height']}x{fields['width']}" if "height" in fields and "width" in fields else "not recorded"] += 1
        formats[fields["format"].decode(errors="replace") if "format" in fields else image_format(fields["encoded"])] += 1
        image_bytes += len(fields["encoded"])
        n += 1
    listed = {s["file"] for s in shards}
    for path in paths:  # empty shards, which yielded no record
        if path.name not in listed:
            shards.append({"file": path.name, "records": 0, "bytes": path.stat().st_size, "compression": "none"})
    order = {p.name: k for k, p in enumerate(paths)}
    shards.sort(key=lambda s: order[s["file"]])
    if classes is None:
        classes = [str(k) for k in range(max(counts) + 1)] if counts else []
        counts = Counter({str(k): v for k, v in counts.items()})
    return {
        "records": n,
        "keys": keys.describe(),
        "compression": sorted({s["compression"] for s in shards if s["records"]}),
        "classes": {c: counts[c] for c in classes} | {c: k for c, k in counts.items() if c not in classes},
        "image_sizes": dict(sizes.most_common()),
        "formats": dict(formats.most_common()),
        "shards": [{"file": s["file"], "records": s["records"]} for s in shards],
        "bytes": {"shards": sum(s["bytes"] for s in shards), "images": image_bytes,
                  "mean_image": image_bytes / n if n else 0.0},
    }


def _from_header(fields) -> dict:
    """Height and width from the image's own header (PIL reads only the header)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(fields["encoded"])) as img:
            return {**fields, "height": img.height, "width": img.width}
    except Exception:  # noqa: BLE001 - an unreadable header leaves the size "not recorded"
        return fields
