"""A records folder: its ``dataset.json``, and `verify_records`, `records_info`, `index_records`.

A folder `write_records` made holds ``NAME-00000-of-0000N.tfrecord`` shards (each with its
``.index`` and ``.labels`` in the subfolder ``.layerkit/``) and ``dataset.json`` (classes, counts, shards, feature keys),
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

from layerkit import storage
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
    DATASET_FILE,
    FOOTER_BYTES,
    RecordError,
    ShardReader,
    Shards,
    check_shard_set,
    as_path,
    index_path,
    join_path,
    masked_crc32c,
    read_bounded,
    remote_object,
    remote_shard_paths,
    shard_paths,
    split_path,
)

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


# === A records folder, with or without dataset.json: the one verdict ===


def records_folder(path):
    """(shard paths, dataset.json's checked fields or None, whether `path` is a folder) of a
    records folder or one shard, local or in a bucket (``gs://B/PREFIX``, ``s3://``, or an
    ``https://`` folder holding a dataset.json).

    The shards are those ``dataset.json`` lists when the folder has one that lists them (each
    must exist), else the folder's files named as shards (`layerkit.records.tfrecord.is_shard_name`;
    a set named ``-NNNNN-of-NNNNN`` must be whole: `check_shard_set`), or the one file `path`
    names.
    """
    path = as_path(path)
    info = None
    if storage.is_remote(path):
        path = path.rstrip("/")
        folder = not remote_object(path)
        if folder:
            try:
                info = load_dataset_info(path)
            except FileNotFoundError:
                info = None
    else:
        folder = path.is_dir()
        if folder and os.path.lexists(path / DATASET_FILE):
            info = load_dataset_info(path)
    if info is not None and info.get("shards"):
        paths = [join_path(path, s["file"]) for s in info["shards"]]
        for p in paths:
            if not storage.is_remote(p) and not os.path.lexists(p):
                raise RecordError(f"shard listed in {DATASET_FILE} is missing", p)
    else:
        paths = remote_shard_paths(path) if storage.is_remote(path) and folder else shard_paths(path)
        if folder:
            check_shard_set(paths)
    return paths, info, folder


def resolve_keys(keys, info, readers) -> ImageKeys:
    """`keys` given (an `ImageKeys`, a name or spec: `ImageKeys.parse`), else dataset.json's,
    else those of the first record of the first non-empty shard (`detect_keys`; default keys
    when every shard is empty). An unknown layout raises `RecordError` naming that record, the
    keys it holds and the ``--keys`` that would fit. None when neither is given and no reader
    is."""
    if keys is not None:
        return ImageKeys.parse(keys)
    if info is not None and "keys" in info:
        return info["image_keys"]
    for reader in readers:
        if len(reader):
            return reader_keys(reader)
    return DEFAULT_KEYS if readers else None


def reader_keys(reader) -> ImageKeys:
    """`detect_keys` of the first record of a non-empty shard; a `RecordError` names it."""
    try:
        return detect_keys(reader.read(0))
    except RecordError as err:
        if err.path is not None:
            raise
        raise RecordError(err.reason, reader.path, 0, 0) from None


class RecordsFolder:
    """A folder of records (or one shard) that passed `open_records`: its open `shards`,
    dataset.json's checked fields (`info`, or None), `keys`, `classes` and one row per record
    (`rows`: label, image start, image size, CRC; the CRC is -1 where the shard had no valid
    labels file and its records were parsed instead). `labels_source` says, per shard, "labels
    file" or "scan"; `notes` lists each side file (index, labels file) that was ignored and why
    (the shard was scanned instead). Close it (or use it as a context manager) when done."""

    def __init__(self, path, info, keys, shards, classes, rows, labels_source, notes):
        self.path, self.info, self.keys, self.shards = as_path(path), info, keys, shards
        self.classes, self.rows, self.labels_source, self.notes = classes, rows, labels_source, notes

    @property
    def labels(self) -> np.ndarray:
        return self.rows[:, 0]

    def close(self) -> None:
        self.shards.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_records(path, keys=None, compression=None, warn: bool = True) -> RecordsFolder:
    """The one verdict on a folder of records (or one shard), which `verify_records`,
    `records_info`, `TFRecordSource` (`open_dataset`, ``layerkit train``) all start from.

    Refused, with a `RecordError` naming the file (and the field of dataset.json or the
    record): a malformed or unreadable dataset.json; a shard it lists that is missing, holds
    another number of records or bytes than it says; without dataset.json, a ``-of-N`` set of
    shard names with a gap or an extra member, or two shards holding the same records (a copy);
    no record at all; a label outside the classes; class counts that differ from the labels;
    a class dataset.json names that no record uses (unless its ``counts`` says 0).

    A side file that does not fit its shard (an invalid ``.index`` or labels file, or a missing
    index of a shard dataset.json lists) is not an error here: the shard is scanned instead,
    the same for every reader, and the note is kept in `notes` (warned when `warn`).
    `verify_records`, which checks side files too, fails on them.
    """
    path = as_path(path)
    paths, info, folder = records_folder(path)
    path = path.rstrip("/") if isinstance(path, str) else path
    listed = info.get("shards") if info is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an invalid index is one of the notes below
        try:
            shards = Shards(paths, compression=compression)
        except FileNotFoundError as err:
            if listed:  # a listed shard not in the bucket
                raise RecordError(f"shard listed in {DATASET_FILE} is missing ({err})", path) from None
            raise
    try:
        notes = []
        for k, reader in enumerate(shards.readers):
            if reader.index_source.startswith("scan ("):
                notes.append((reader.path, f"invalid index: {reader.index_source[6:-1]}"))
            elif listed and reader.index_source == "scan":
                notes.append((reader.path, f"missing index: {index_path(reader.path)}"))
            if listed:
                entry = listed[k]
                if len(reader) != entry["records"]:
                    raise RecordError(f"holds {len(reader)} records, {DATASET_FILE} says {entry['records']}: the "
                                      "shard was cut, emptied or appended to after it was written", reader.path)
                if "bytes" in entry and reader.size != entry["bytes"]:
                    raise RecordError(f"is {reader.size} bytes, {DATASET_FILE} says {entry['bytes']}: the shard "
                                      "changed after it was written", reader.path)
        if info is None and folder:
            check_no_copies(shards.readers)
        n = len(shards)
        if n == 0:
            raise RecordError("the shards hold no records", path)
        keys = resolve_keys(keys, info, shards.readers)
        named = info.get("classes") if info is not None else None
        rows = np.empty((n, 4), np.int64)
        labels_source = []
        for s, reader in enumerate(shards.readers):
            lo, hi = int(shards.starts[s]), int(shards.starts[s + 1])
            found, why = load_labels(reader, len(named) if named else None)
            if found is not None:
                rows[lo:hi] = found
                labels_source.append("labels file")
                continue
            if why != "no labels file":
                notes.append((reader.path, f"invalid labels file: {why}"))
            labels_source.append("scan")
            rows[lo:hi] = scan_labels(reader, keys)
            rows[lo:hi, 3] = -1  # parsed now; the first read of each record parses it again
        labels = rows[:, 0]
        classes = tuple(str(c) for c in named) if named else tuple(str(i) for i in range(max(int(labels.max()) + 1, 0)))
        bad = np.flatnonzero((labels < 0) | (labels >= len(classes)))
        if bad.size:
            s, j = shards.locate(int(bad[0]))
            expected = f"0..{len(classes) - 1}" if named else "a label >= 0"
            raise RecordError(f"label {int(labels[bad[0]])} is out of range for {len(classes)} classes "
                              f"(expected {expected}; {bad.size} such records)",
                              shards.paths[s], j, int(shards.readers[s].offsets[j]))
        if info is not None:
            _check_classes(info, classes, np.bincount(labels, minlength=len(classes)), n,
                           join_path(path, DATASET_FILE))
        if warn:
            for _, why in notes:  # each names its side file
                warnings.warn(f"{why}; scanning the shard instead", stacklevel=2)
        return RecordsFolder(path, info, keys, shards, classes, rows, labels_source, notes)
    except BaseException:
        shards.close()
        raise


def _check_classes(info, classes, found, n, where) -> None:
    """dataset.json's record count, class counts and class list against the labels found."""
    if "records" in info and info["records"] != n:
        raise RecordError(f"{n} records found in the shards, {DATASET_FILE} says {info['records']}", where)
    counts = info.get("counts")
    if counts is not None:
        wrong = {c: (int(found[k]), counts.get(c)) for k, c in enumerate(classes) if found[k] != counts.get(c, 0)}
        if wrong:
            raise RecordError("class counts differ from the shards' labels: " + ", ".join(
                f"{c!r}: {got} in the shards, {want if want is not None else 'none'} in the file"
                for c, (got, want) in wrong.items()), where)
    unused = [c for k, c in enumerate(classes) if found[k] == 0 and (counts is None or c not in counts)]
    if unused:
        raise RecordError(f"names {len(classes)} classes, but no record has the label of "
                          f"{', '.join(repr(c) for c in unused[:5])}{' ...' if len(unused) > 5 else ''} "
                          f"(labels found: {sorted(int(k) for k in np.flatnonzero(found))[:12]}): a class no "
                          f"record uses would be trained as one that never occurs; list it in 'counts' with 0 "
                          "if it is meant to be empty", where)


def check_no_copies(readers) -> None:
    """Refuse two non-empty shards that hold the same records (a copy of a shard beside it):
    same size, count, and stored CRCs of their first and last records."""
    seen = {}
    for reader in readers:
        if not len(reader):
            continue
        ends = reader.offsets
        key = (reader.size, len(reader), reader._peek(FOOTER_BYTES, int(ends[1]) - FOOTER_BYTES),
               reader._peek(FOOTER_BYTES, int(ends[-1]) - FOOTER_BYTES))
        if key in seen:
            raise RecordError(f"holds the same {len(reader)} records as {seen[key].name} (a copy?): each record "
                              "would be read twice; remove one of them", reader.path)
        seen[key] = reader.path


# === Indexing shards another writer made ===


def index_records(folder, keys=None, progress: bool | None = None, compression=None) -> dict:
    """Write the offset index (where missing or stale) and the labels file of every shard in
    `folder`, e.g. shards TensorFlow wrote, so that opening the folder reads no record.

    The shards are `records_folder`'s; keys given, dataset.json's, else detected from the
    first record (`resolve_keys`). Every record is read and parsed once; a record that is not an
    image Example with a label >= 0 raises `RecordError`. The index and labels file of a
    GZIP/ZLIB shard give offsets in its decompressed bytes.
    Returns ``{"shards": k, "records": n, "indexes_written": m, "keys": name}``.
    """
    from layerkit.records.tfrecord import write_index

    folder = as_path(folder)
    if not storage.is_remote(folder):
        remove_stale_temps(folder if folder.is_dir() else folder.parent)
    paths, info, _ = records_folder(folder)
    if info is not None and storage.scheme(folder) not in (None, *storage.WRITABLE):
        raise ValueError(f"{storage.redact(folder)}: layerkit wrote this folder (it holds a {DATASET_FILE}), so its "
                         "index and labels files are in its .layerkit/ already, and an https:// folder is read-only: "
                         "there is nothing to index")
    n = indexes = 0
    keys = resolve_keys(keys, info, [])  # given or dataset.json's; else None: detected below
    bar = Progress(f"indexing {folder}", len(paths), progress)
    for k, path in enumerate(paths):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a stale index is rewritten below
            reader = ShardReader(path, compression=compression)
        with reader:
            if reader.index_source != "index":
                write_index(path, np.array(reader.offsets), size=reader.size)
                indexes += 1
            if keys is None and len(reader):
                keys = reader_keys(reader)
            rows = scan_labels(reader, keys or DEFAULT_KEYS)
            write_labels(path, rows, reader.offsets)
            n += len(rows)
        bar.update(k + 1)
    bar.close()
    return {"shards": len(paths), "records": n, "indexes_written": indexes, "keys": (keys or DEFAULT_KEYS).describe()}


# === Reading back ===


REQUIRED_FIELDS = ()  # every field is optional: a hand-written dataset.json may name only the classes


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
        text = read_bounded(path, MAX_DATASET_JSON_BYTES, "a dataset.json")
    except FileNotFoundError:
        raise FileNotFoundError(f"{storage.redact(path)} not found: not a records folder written by write_records "
                                "(or unfinished)") from None
    if len(text) > MAX_DATASET_JSON_BYTES:
        raise RecordError(f"larger than {MAX_DATASET_JSON_BYTES} bytes: not a dataset.json", path)
    try:
        info = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise RecordError(f"not valid JSON: {err}", path) from err
    return check_dataset_info(info, path, required)


def load_dataset_info(out_dir) -> dict:
    """dataset.json of a records folder, checked for the fields the readers need."""
    return read_dataset_info(join_path(as_path(out_dir), DATASET_FILE))


def _each_record(folder):
    """Yield (shard number, reader, local index, offset, payload) over every record of an
    open `RecordsFolder`, shard by shard."""
    for s, reader in enumerate(folder.shards.readers):
        for j in range(len(reader)):
            yield s, reader, j, int(reader.offsets[j]), reader.read(j)


def verify_records(out_dir, decode: bool = True, progress: bool | None = None, keys=None, compression=None) -> dict:
    """`open_records`'s verdict, then every record read: every CRC, that every payload is an
    image Example whose label and image bytes are those its labels file (where there is one)
    says, and every image decodes to the height and width stored.

    Stricter than opening for training on one point: a side file that does not fit its
    shard (an invalid ``.index`` or labels file, or a missing index of a shard dataset.json
    lists), which readers skip with a warning, is a failure here (`layerkit records index`
    rewrites them).

    `out_dir` is a records folder, with or without ``dataset.json`` (shards TensorFlow wrote),
    or one shard; `keys` and `compression` as `open_records` takes them.
    Returns ``{"records": n, "shards": k, "keys": name, "classes": c}``; raises `RecordError`
    naming the shard, record index and byte offset of the first fault.
    """
    with open_records(out_dir, keys, compression, warn=False) as folder:
        if folder.notes:
            where, why = folder.notes[0]
            raise RecordError(f"{why} (readers scan the shard instead; `layerkit records index` rewrites it)", where)
        keys = folder.keys
        bar = Progress(f"verifying {out_dir}", len(folder.rows), progress)
        n = 0
        for s, reader, j, offset, payload in _each_record(folder):
            row = folder.rows[int(folder.shards.starts[s]) + j].tolist()
            try:
                fields = image_fields(parse_example(payload), keys)  # every feature parsed, not just ours
                if folder.labels_source[s] == "labels file":
                    label = fields["label"]
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
                elif fields["label"] != row[0]:
                    raise ValueError(f"label {fields['label']} read now, {row[0]} when the folder was opened")
                if decode:
                    pixels = decode_image(fields["encoded"])
                    stored = (fields.get("height", pixels.shape[0]), fields.get("width", pixels.shape[1]))
                    if stored != pixels.shape[:2]:
                        raise ValueError(f"records height x width {stored}, the image decodes to {pixels.shape[:2]}")
            except ValueError as err:
                raise RecordError(str(err), reader.path, j, offset) from err
            n += 1
            bar.update(n)
        bar.close()
        return {"records": n, "shards": len(folder.shards.readers), "keys": keys.describe(),
                "classes": len(folder.classes)}


def records_info(out_dir, keys=None, compression=None) -> dict:
    """Counts per class, image sizes and formats, and bytes, of a folder `open_records` accepts
    (its side-file notes warned, as training warns them).

    Without dataset.json the classes are the labels found, named by their numbers, and a
    format or size not stored in the records is taken from the image's own header."""
    with open_records(out_dir, keys, compression) as folder:
        keys = folder.keys
        sizes, formats = Counter(), Counter()
        image_bytes = n = 0
        for _, reader, j, offset, payload in _each_record(folder):
            try:
                fields = image_example_fields(payload, keys)
            except ValueError as err:
                raise RecordError(str(err), reader.path, j, offset) from err
            if "height" not in fields or "width" not in fields:
                fields = _from_header(fields)
            sizes[f"{fields['height']}x{fields['width']}" if "height" in fields and "width" in fields else "not recorded"] += 1
            formats[fields["format"].decode(errors="replace") if "format" in fields else image_format(fields["encoded"])] += 1
            image_bytes += len(fields["encoded"])
            n += 1
        found = np.bincount(folder.labels, minlength=len(folder.classes))
        shards = [{"file": split_path(r.path)[1], "records": len(r), "bytes": r.file_size,
                   "compression": r.compression or "none"} for r in folder.shards.readers]
        return {
            "records": n,
            "keys": keys.describe(),
            "compression": sorted({s["compression"] for s in shards if s["records"]}),
            "classes": {c: int(found[k]) for k, c in enumerate(folder.classes)},
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
