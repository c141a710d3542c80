"""Fuzzing a whole records folder: shards, `.index`, `.labels` and `dataset.json` mutated.

Every mutated folder is opened (`TFRecordSource`), read through (`encoded_many` and a
`Pipeline`) and verified (`verify_records`). Each (image, label) pair served must be a true
pair of the written set; every failure must be one of the project's errors (a `ValueError`:
`RecordError`, `DecodeError`) naming the folder or a file in it; nothing may hang.

The example count is ``LAYERKIT_FUZZ_EXAMPLES`` (default 60, a few seconds); a long run:

    LAYERKIT_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest -q -n 0 tests/data/test_fuzz_records.py
"""

import gzip
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from layerkit.data.pipeline import Pipeline
from layerkit.records.labels import TRAILER, labels_path, write_labels
from layerkit.records import verify_records, write_records
from layerkit.data.sources import TFRecordSource
from layerkit.records.tfrecord import ShardReader, ShardWriter, index_path, scan_offsets

EXAMPLES = int(os.environ.get("LAYERKIT_FUZZ_EXAMPLES", "60"))
SHARDS, IMAGES, CLASSES = 3, 24, 3
TIMEOUT_S = 20  # one example that takes longer is a hang
OUTCOMES = Counter()  # "ok" (every pair served and right) or "error" (a project error), per folder


class Truth(tuple):
    """(folder, encoded bytes -> label, pixels -> label), shown short in Hypothesis's reports."""

    def __new__(cls, *items):
        return super().__new__(cls, items)

    def __repr__(self):
        return f"Truth({self[0]}, {len(self[1])} images)"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A written records folder, and the truth: encoded bytes -> label, pixels -> label."""
    root = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    encoded, pixels = {}, {}
    for k in range(IMAGES):
        label = k % CLASSES
        (root / "src" / f"c{label}").mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        (root / "src" / f"c{label}" / f"{k}.png").write_bytes(buf.getvalue())
        encoded[buf.getvalue()] = label
        pixels[img.tobytes()] = label
    write_records(root / "src", root / "o", shards=SHARDS)
    yield Truth(root / "o", encoded, pixels)
    if OUTCOMES:
        print(f"\nfuzzed records folders: {dict(OUTCOMES)}", file=sys.stderr)


def files(folder):
    shards = [folder / f"records-{k:05d}-of-{SHARDS:05d}.tfrecord" for k in range(SHARDS)]
    return {"shard": shards, "index": [index_path(p) for p in shards],
            "labels": [labels_path(p) for p in shards], "json": [folder / "dataset.json"] * SHARDS}


# === Mutations: (kind, file kind, shard number, arguments) ===

kinds = st.sampled_from(["shard", "index", "labels", "json"])
BOMB_LIMIT = 4 << 20  # max_decompressed_bytes while fuzzing: a gzip bomb is 8 MiB of zeros
mutation = st.one_of(
    st.tuples(st.just("flip"), kinds, st.integers(0, SHARDS - 1),
              st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=3)),
    st.tuples(st.just("cut"), kinds, st.integers(0, SHARDS - 1), st.integers(1, 10**6)),
    st.tuples(st.just("cut_at_record"), st.just("shard"), st.integers(0, SHARDS - 1), st.integers(0, 10)),
    st.tuples(st.just("append"), kinds, st.integers(0, SHARDS - 1), st.binary(min_size=1, max_size=40)),
    st.tuples(st.just("append_record"), st.just("shard"), st.integers(0, SHARDS - 1), st.integers(0, 10)),
    st.tuples(st.just("empty"), kinds, st.integers(0, SHARDS - 1), st.none()),
    st.tuples(st.just("delete"), kinds, st.integers(0, SHARDS - 1), st.none()),
    st.tuples(st.just("fifo"), kinds, st.integers(0, SHARDS - 1), st.none()),
    st.tuples(st.just("folder"), kinds, st.integers(0, SHARDS - 1), st.none()),
    st.tuples(st.just("symlink_loop"), kinds, st.integers(0, SHARDS - 1), st.none()),
    st.tuples(st.just("sparse"), kinds, st.integers(0, SHARDS - 1), st.sampled_from([1 << 20, 3 << 30])),
    st.tuples(st.just("gzip"), st.just("shard"), st.integers(0, SHARDS - 1), st.none()),
    st.tuples(st.just("gzip_bomb"), st.just("shard"), st.integers(0, SHARDS - 1), st.none()),
    st.tuples(st.just("copy"), st.just("shard"), st.integers(0, SHARDS - 1), st.sampled_from(
        ["records-{k:05d}-of-00003 copy.tfrecord", "records-00003-of-00003.tfrecord", "records-{k:05d}-of-00004.tfrecord"])),
    st.tuples(st.just("row"), st.just("labels"), st.integers(0, SHARDS - 1),
              st.tuples(st.integers(0, 20), st.integers(0, 3), st.integers(-3, 3), st.booleans())),
    st.tuples(st.just("permute"), st.just("shard"), st.integers(0, SHARDS - 1), st.randoms(use_true_random=False)),
    st.tuples(st.just("swap"), st.just("shard"), st.integers(0, SHARDS - 1), st.integers(1, SHARDS - 1)),
    st.tuples(st.just("json_field"), st.just("json"), st.integers(0, SHARDS - 1),
              st.tuples(st.sampled_from(["classes", "shards", "keys", "records", "counts", "shard.records",
                                         "shard.file", "shard.bytes", "count"]),
                        st.recursive(st.none() | st.booleans() | st.integers(-2, 400) | st.text(max_size=6),
                                     lambda v: st.lists(v, max_size=3) | st.dictionaries(st.text(max_size=6), v, max_size=3),
                                     max_leaves=4))),
)


def _rewrite(path, data):
    path.unlink(missing_ok=True)
    path.write_bytes(data)


def apply(folder, kind, what, k, arg):
    path = files(folder)[what][k]
    shard = files(folder)["shard"][k]
    if not path.is_file() or (kind in ("cut_at_record", "append_record", "permute", "row") and not shard.is_file()):
        return  # a FIFO or folder from an earlier mutation: never opened here (it would block)
    if kind == "flip":
        raw = bytearray(path.read_bytes())
        if raw:
            for pos, value in arg:
                raw[pos % len(raw)] = value
            _rewrite(path, bytes(raw))
    elif kind == "cut":
        raw = path.read_bytes()
        _rewrite(path, raw[: max(0, len(raw) - arg % (len(raw) + 1))])
    elif kind == "append":
        _rewrite(path, path.read_bytes() + arg)
    elif kind == "empty":
        _rewrite(path, b"")
    elif kind == "delete":
        path.unlink()
    elif kind == "fifo":
        path.unlink()
        os.mkfifo(path)
    elif kind == "folder":
        path.unlink()
        path.mkdir()
    elif kind == "symlink_loop":
        path.unlink()
        os.symlink(path.name, path)  # a link to itself: ELOOP on open
    elif kind == "sparse":  # grown by a hole: large on paper, no disk used
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size + arg)
    elif kind == "gzip":  # the same records as a GZIP shard: read alike (its index and labels still fit)
        _rewrite(path, gzip.compress(path.read_bytes(), compresslevel=1))
    elif kind == "gzip_bomb":  # inflates past the limit the test sets (BOMB_LIMIT)
        _rewrite(path, gzip.compress(bytes(2 * BOMB_LIMIT), compresslevel=1))
    elif kind == "copy" and not (folder / "dataset.json").is_file():
        shutil.copyfile(path, folder / arg.format(k=k))
    elif kind in ("cut_at_record", "append_record", "permute", "row"):
        try:
            offsets = scan_offsets(shard)
        except Exception:  # noqa: BLE001 - already broken by an earlier mutation
            return
        raw = shard.read_bytes()
        n = len(offsets) - 1
        if kind == "cut_at_record":
            _rewrite(shard, raw[: offsets[arg % (n + 1)]])
        elif kind == "append_record" and n:
            j = arg % n
            _rewrite(shard, raw + raw[offsets[j] : offsets[j + 1]])
        elif kind == "permute" and n and not any(
                os.path.lexists(p) and not p.is_file() for p in (index_path(shard), labels_path(shard))):
            # the same bytes in another order; the old index and labels files kept
            keep = {p: p.read_bytes() for p in (index_path(shard), labels_path(shard)) if p.is_file()}
            order = list(range(n))
            arg.shuffle(order)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    with ShardReader(shard) as r:
                        payloads = [r.read(j) for j in range(n)]
            except ValueError:  # broken by an earlier mutation
                return
            with ShardWriter(shard, index=False) as w:
                for j in order:
                    w.write(payloads[j])
            for p, data in keep.items():
                _rewrite(p, data)
        elif kind == "row" and labels_path(shard).is_file():
            row, col, delta, forge = arg
            try:
                flat = np.load(labels_path(shard))
                rows = flat[:-TRAILER].reshape(-1, 4).copy()
            except Exception:  # noqa: BLE001 - broken by an earlier mutation
                return
            if not len(rows) or not delta:
                return
            rows[row % len(rows), col] += delta
            if forge and len(rows) == n:  # a valid checksum over the edited row
                write_labels(shard, rows, offsets)
            else:
                buf = io.BytesIO()
                np.save(buf, np.concatenate([rows.reshape(-1), flat[-TRAILER:]]), allow_pickle=False)
                _rewrite(labels_path(shard), buf.getvalue())
    elif kind == "swap":
        other = files(folder)["shard"][(k + arg) % SHARDS]
        if path.is_file() and other.is_file():
            a, b = path.read_bytes(), other.read_bytes()
            _rewrite(path, b)
            _rewrite(other, a)
    elif kind == "json_field":
        field, value = arg
        try:
            info = json.loads(path.read_text())
            if field.startswith("shard."):
                info["shards"][k][field[6:]] = value
            elif field == "count":
                info["counts"][info["classes"][k % len(info["classes"])]] = value
            else:
                info[field] = value
        except Exception:  # noqa: BLE001 - broken by an earlier mutation
            return
        _rewrite(path, json.dumps(info).encode())


def _timeout(*_):
    raise TimeoutError(f"an example ran over {TIMEOUT_S} s: a hang")


def check_folder(folder, encoded, pixels) -> str:
    """Open, read and verify `folder`; "ok" or "error". Wrong pairs and raw exceptions fail."""
    outcome = "ok"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source = TFRecordSource(folder)
        labels = np.asarray(source.labels)
        for lo in range(0, len(source), 7):
            idx = list(range(lo, min(len(source), lo + 7)))
            for i, blob in zip(idx, source.encoded_many(idx)):
                assert encoded.get(bytes(blob)) == labels[i], f"wrong pair at {i}"
        batches = Pipeline(source, batch_size=5, shuffle=False, cache_decoded=False, prefetch=0, workers=1)
        for b in range(len(batches)):
            images, got = batches[b]
            for img, label in zip(images, got):
                assert pixels.get(np.asarray(img).tobytes()) == label, "wrong pair from the pipeline"
    except ValueError as err:  # RecordError, DecodeError: the project's errors
        assert str(folder) in str(err), f"error names no file of the folder: {err!r}"
        outcome = "error"
    try:
        verify_records(folder)
    except (ValueError, FileNotFoundError) as err:
        assert str(folder) in str(err), f"verify's error names no file of the folder: {err!r}"
    else:  # one verdict: a folder verify passes, training opens and reads whole
        assert outcome == "ok", "verify passed a folder that TFRecordSource refused"
    return outcome


@settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 100,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(st.lists(mutation, min_size=1, max_size=3))
def test_fuzz_mutated_records_folders(pristine, monkeypatch, mutations):
    from layerkit.records import tfrecord

    monkeypatch.setattr(tfrecord, "MAX_DECOMPRESSED_BYTES", BOMB_LIMIT)
    folder0, encoded, pixels = pristine
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "o"
        shutil.copytree(folder0, folder)
        for kind, what, k, arg in mutations:
            apply(folder, kind, what, k, arg)
        old = signal.signal(signal.SIGALRM, _timeout)
        signal.alarm(TIMEOUT_S)
        try:
            OUTCOMES[check_folder(folder, encoded, pixels)] += 1
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)


def test_the_pristine_folder_serves_every_pair(pristine):
    folder, encoded, pixels = pristine
    assert check_folder(folder, encoded, pixels) == "ok"
    assert sorted(TFRecordSource(folder).labels.tolist()) == sorted(encoded.values())
