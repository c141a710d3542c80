"""TFRecord framing, index, writer and readers (layerkit.records.tfrecord)."""

import os
import random
import struct
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layerkit.records.tfrecord import (
    RecordError,
    ShardReader,
    Shards,
    ShardWriter,
    crc32c,
    encode_record,
    index_path,
    mask_crc,
    masked_crc32c,
    scan_offsets,
)

FIXTURE = Path(__file__).parent / "fixtures" / "tf_examples.tfrecord"


def payloads(n, seed=0):
    rng = random.Random(seed)
    return [bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 7, 100, 3000]))) for _ in range(n)]


def write_shard(path, items, index=True):
    with ShardWriter(path, index=index) as w:
        for p in items:
            w.write(p)
    return path


def quiet_reader(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ShardReader(path, **kwargs)


# === Checksums and framing ===


@pytest.mark.parametrize(
    "data, crc",
    [
        (b"123456789", 0xE3069283),  # the CRC catalogue's check value
        (b"", 0),
        (bytes(32), 0x8A9136AA),  # RFC 3720 B.4 vectors
        (b"\xff" * 32, 0x62A8AB43),
        (bytes(range(32)), 0x46DD794E),
        (bytes(range(31, -1, -1)), 0x113FDB5C),
    ],
)
def test_crc32c_known_vectors(data, crc):
    assert crc32c(data) == crc


def test_mask_matches_definition():
    for crc in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert mask_crc(crc) == ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) % 2**32)
    assert mask_crc(0) == 0xA282EAD8


def test_framing_is_byte_identical_to_tensorflows_writer():
    """Re-framing each payload of a shard written by TensorFlow gives the same bytes."""
    raw = FIXTURE.read_bytes()
    reader = ShardReader(FIXTURE)
    assert reader.index_source == "scan"  # TF writes no index
    assert len(reader) == 6
    rebuilt = b"".join(encode_record(p) for p in reader)
    assert rebuilt == raw


def test_encode_record_layout():
    frame = encode_record(b"abc")
    assert struct.unpack("<Q", frame[:8])[0] == 3
    assert struct.unpack("<I", frame[8:12])[0] == masked_crc32c(frame[:8])
    assert frame[12:15] == b"abc"
    assert struct.unpack("<I", frame[15:])[0] == masked_crc32c(b"abc")


# === Writer and reader round trip ===


def test_round_trip_random_access(tmp_path):
    items = payloads(60)
    path = write_shard(tmp_path / "a.tfrecord", items)
    with ShardReader(path) as r:
        assert r.index_source == "index"
        assert len(r) == 60
        assert [r.read(i) for i in range(60)] == items
        assert r.read(-1) == items[-1]
        assert r.read(np.int64(5)) == items[5]
        assert list(r) == items
        want = [59, 0, 3, 3, 4, 5, 30, 2]
        assert r.read_many(want) == [items[i] for i in want]
        assert r.read_many(np.arange(60)) == items
        assert r.read_many([]) == []
        with pytest.raises(IndexError, match="out of range"):
            r.read(60)



@pytest.mark.parametrize("bad, error, message", [
    (True, TypeError, r"record index must be an int, got bool True"),
    (1.0, TypeError, r"record index must be an int, got float 1.0"),
    ([0, "1"], TypeError, r"record index must be an int, got str '1'"),
    (np.array([0.0, 1.0]), TypeError, r"record indices must be ints, got an array of float64"),
    (np.array([True]), TypeError, r"record indices must be ints, got an array of bool"),
    ([0, 6], IndexError, r"record 6 out of range for "),
    (np.array([-7]), IndexError, r"record -7 out of range for "),
])
def test_one_index_check_for_a_shard_and_for_shards(tmp_path, bad, error, message):
    """ShardReader and Shards check indices with one rule, and say which index and what holds
    the records; negative indices count from the end in both."""
    items = payloads(6)
    write_shard(tmp_path / "a.tfrecord", items)
    with ShardReader(tmp_path / "a.tfrecord") as r, Shards(tmp_path) as s:
        assert r.read_many(range(-2, 0)) == s.read_many([-2, -1]) == items[-2:]
        assert s.locate(-1) == (0, 5) and r.read(np.int64(-6)) == items[0]
        calls = [(r.read_many, "shard .*a.tfrecord of 6 records"), (s.read_many, "6 records in 1 shards")]
        if np.ndim(bad) == 0:
            calls += [(r.read, "shard .*a.tfrecord of 6 records"), (s.locate, "6 records in 1 shards")]
        for call, where in calls:
            with pytest.raises(error, match=message + (where if error is IndexError else "")):
                call(bad)

def test_index_is_int64_npy_loadable_without_pickle(tmp_path):
    items = payloads(10)
    path = write_shard(tmp_path / "a.tfrecord", items)
    offsets = np.load(index_path(path), allow_pickle=False)
    assert offsets.dtype == np.int64 and offsets.shape == (11,)
    assert offsets[0] == 0 and offsets[-1] == path.stat().st_size
    assert np.array_equal(offsets, scan_offsets(path))
    assert list(np.diff(offsets)) == [len(p) + 16 for p in items]


def test_missing_index_is_rebuilt_by_one_scan(tmp_path):
    items = payloads(20)
    path = write_shard(tmp_path / "a.tfrecord", items, index=False)
    assert not index_path(path).exists()
    r = ShardReader(path)
    assert r.index_source == "scan"
    assert list(r) == items


@pytest.mark.parametrize(
    "index_bytes",
    [
        b"not an npy file",
        "pickle",  # an object array: refused, allow_pickle=False
        "stale",  # offsets of another shard
        "float",
        "huge",  # an .npy header claiming 2**40 offsets
        "large",  # more bytes than any index of this shard could hold
    ],
)
def test_invalid_index_is_ignored_with_a_warning(tmp_path, index_bytes):
    items = payloads(12)
    path = write_shard(tmp_path / "a.tfrecord", items)
    ipath = index_path(path)
    if index_bytes == "pickle":
        with open(ipath, "wb") as f:
            np.save(f, np.array([0, {"x": 1}], dtype=object), allow_pickle=True)
    elif index_bytes == "stale":
        with open(ipath, "wb") as f:
            np.save(f, np.array([0, 16, 40], np.int64))
    elif index_bytes == "float":
        offsets = np.load(ipath)
        with open(ipath, "wb") as f:
            np.save(f, offsets.astype(np.float64))
    elif index_bytes == "huge":
        data = ipath.read_bytes()
        ipath.write_bytes(data.replace(b"(13,)", b"(1099511627776,)".ljust(5)))
        assert b"1099511627776" in ipath.read_bytes()
    elif index_bytes == "large":
        with open(ipath, "wb") as f:
            np.save(f, np.arange(10_000, dtype=np.int64))
    else:
        ipath.write_bytes(index_bytes)
    with pytest.warns(UserWarning, match="ignoring invalid index"):
        r = ShardReader(path)
    assert r.index_source.startswith("scan (")
    assert list(r) == items


def test_writer_leaves_nothing_on_exception(tmp_path):
    path = tmp_path / "a.tfrecord"
    with pytest.raises(RuntimeError):
        with ShardWriter(path) as w:
            w.write(b"one")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_unclosed_writer_shows_no_shard(tmp_path):
    """Until close() the records live in a hidden temp file: a crash leaves no shard that looks whole."""
    path = tmp_path / "a.tfrecord"
    w = ShardWriter(path)
    w.write(b"one")
    w._file.flush()
    assert not path.exists()
    assert [p.name.startswith(".") for p in tmp_path.iterdir()] == [True]
    assert list(tmp_path.glob("*.tfrecord")) == []
    w.close()
    assert path.exists() and index_path(path).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".layerkit", "a.tfrecord"]
    assert [p.name for p in (tmp_path / ".layerkit").iterdir()] == ["a.tfrecord.index"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0o600


def test_rewriting_a_shard_replaces_its_index(tmp_path):
    path = write_shard(tmp_path / "a.tfrecord", payloads(10))
    write_shard(path, [b"x", b"yy"])
    r = ShardReader(path)
    assert r.index_source == "index" and list(r) == [b"x", b"yy"]


def test_writer_refuses_oversized_and_non_bytes(tmp_path):
    with ShardWriter(tmp_path / "a.tfrecord", max_record_bytes=10) as w:
        with pytest.raises(RecordError, match="exceeds max_record_bytes=10"):
            w.write(b"x" * 11)
        with pytest.raises(TypeError, match="bytes-like"):
            w.write("text")
        w.write(b"x" * 10)
    assert list(ShardReader(tmp_path / "a.tfrecord")) == [b"x" * 10]


def test_threaded_reads_agree(tmp_path):
    items = payloads(200, seed=3)
    path = write_shard(tmp_path / "a.tfrecord", items)
    r = ShardReader(path)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 200, 16) for _ in range(64)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(r.read_many, batches))
        singles = list(pool.map(r.read, range(200)))
    assert singles == items
    for idx, got in zip(batches, results):
        assert got == [items[i] for i in idx]


# === Faults: each names shard, record and byte offset ===


def test_wrong_payload_crc_names_record_and_offset(tmp_path):
    items = [b"a" * 10, b"b" * 20, b"c" * 30]
    path = write_shard(tmp_path / "a.tfrecord", items)
    raw = bytearray(path.read_bytes())
    offset = 26 + 12 + 5  # record 1 starts after record 0's 10 + 16 bytes
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))
    r = ShardReader(path)
    assert r.read(0) == items[0] and r.read(2) == items[2]
    with pytest.raises(RecordError, match=r"a\.tfrecord, record 1, byte offset 26: payload of 20 bytes fails its CRC") as e:
        r.read(1)
    assert (e.value.path, e.value.index, e.value.offset) == (path, 1, 26)
    with pytest.raises(RecordError, match="record 1"):
        r.read_many([0, 1, 2])


def test_wrong_length_crc(tmp_path):
    path = write_shard(tmp_path / "a.tfrecord", [b"a" * 10, b"b" * 20], index=False)
    raw = bytearray(path.read_bytes())
    raw[26 + 9] ^= 0x80  # the length CRC of record 1
    path.write_bytes(bytes(raw))
    with pytest.raises(RecordError, match="record 1, byte offset 26: length field fails its CRC"):
        ShardReader(path)


@pytest.mark.parametrize("cut, what", [(26 + 20, "record needs"), (26 + 5, "record header")])
def test_truncated_shard(tmp_path, cut, what):
    path = write_shard(tmp_path / "a.tfrecord", [b"a" * 10, b"b" * 20])
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(RecordError, match=f"record 1, byte offset 26: truncated shard.*{what}"):
        quiet_reader(path)


def test_oversized_length_field_refused_before_allocating(tmp_path):
    """A length of 2**40 with a valid CRC is refused by the limit, not by trying to read a TiB."""
    length = struct.pack("<Q", 2**40)
    path = tmp_path / "a.tfrecord"
    path.write_bytes(length + struct.pack("<I", masked_crc32c(length)) + b"\0" * 100)
    with pytest.raises(RecordError, match=r"record 0, byte offset 0: length field says 1099511627776 bytes, above the limit of 67108864"):
        ShardReader(path)


def test_length_past_end_of_file(tmp_path):
    length = struct.pack("<Q", 1000)
    path = tmp_path / "a.tfrecord"
    path.write_bytes(length + struct.pack("<I", masked_crc32c(length)) + b"\0" * 100)
    with pytest.raises(RecordError, match="needs 1004 bytes after its header, only 100 remain"):
        ShardReader(path)


def test_max_record_bytes_is_configurable(tmp_path):
    path = write_shard(tmp_path / "a.tfrecord", [b"x" * 100], index=False)
    with pytest.raises(RecordError, match="above the limit of 99"):
        ShardReader(path, max_record_bytes=99)
    assert ShardReader(path, max_record_bytes=100).read(0) == b"x" * 100
    with pytest.raises(ValueError, match="max_record_bytes must be a non-negative int"):
        ShardReader(path, max_record_bytes=-1)


def test_index_disagreeing_with_shard_is_a_record_error(tmp_path):
    """Same size, different framing: the index passes its checks, the read catches it."""
    path = write_shard(tmp_path / "a.tfrecord", [b"a" * 10, b"b" * 20])
    ipath = index_path(path)
    with open(ipath, "wb") as f:
        np.save(f, np.array([0, 36, 62], np.int64))  # record 0 claimed 20 bytes, it holds 10
    with pytest.raises(RecordError, match=r"record 0, byte offset 0: the index a.tfrecord.index is stale: .*"
                                          r"first difference at record 1: byte offset 36 in the index, 26 in the shard"):
        ShardReader(path).read(0)
    path.write_bytes(path.read_bytes()[:26] + b"\0" * 36)  # corrupt, not rewritten: no scan agrees either
    with pytest.raises(RecordError, match="record 1, byte offset 36: length field fails its CRC"):
        ShardReader(path).read(1)


def test_a_same_size_rewrite_is_called_a_stale_index_not_a_truncated_shard(tmp_path):
    path = write_shard(tmp_path / "a.tfrecord", [b"a" * 10, b"b" * 30])
    stale = index_path(path).read_bytes()
    write_shard(path, [b"c" * 30, b"d" * 10])  # the same size, other framing
    index_path(path).write_bytes(stale)
    with ShardReader(path) as r:
        assert r.index_source == "index"
        for i in (0, 1):
            with pytest.raises(RecordError, match=rf"record {i}, byte offset \d+: the index a.tfrecord.index is stale") as err:
                r.read(i)
            assert "truncated" not in str(err.value)


def test_not_a_shard(tmp_path):
    path = tmp_path / "a.tfrecord"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(RecordError, match="not a TFRecord file"):
        ShardReader(path)
    with pytest.raises(FileNotFoundError):
        ShardReader(tmp_path / "missing.tfrecord")


# === Shards: one sequence over several ===


def test_shards_global_index(tmp_path):
    parts = [payloads(3, 1), [], payloads(5, 2), payloads(1, 3)]
    for k, items in enumerate(parts):
        write_shard(tmp_path / f"s-{k}.tfrecord", items)
    flat = [p for items in parts for p in items]
    with Shards(tmp_path) as s:
        assert len(s) == 9 and len(s.readers) == 4
        assert [s.locate(i) for i in (0, 2, 3, 7, 8, -1)] == [(0, 0), (0, 2), (2, 0), (2, 4), (3, 0), (3, 0)]
        assert [s.read(i) for i in range(9)] == flat
        assert list(s) == flat
        want = [8, 0, 4, 4, 2, 7]
        assert s.read_many(want) == [flat[i] for i in want]
        with pytest.raises(IndexError):
            s.locate(9)
    explicit = Shards([tmp_path / "s-2.tfrecord", tmp_path / "s-0.tfrecord"])
    assert list(explicit) == parts[2] + parts[0]


def test_shards_folder_names(tmp_path):
    names = ["flowers00-230.tfrec", "train.tfrecord-00001-of-00002", "a.tfrecords", "b.tfrecord"]
    for k, name in enumerate(names):
        write_shard(tmp_path / name, [name.encode()])
    (tmp_path / "notes.txt").write_text("not a shard")
    (tmp_path / ".b.tfrecord.1234.tmp").write_bytes(b"half a shard")
    with Shards(tmp_path) as s:
        assert [p.name for p in s.paths] == sorted(names)
        assert sorted(s) == sorted(n.encode() for n in names)


def test_shards_empty_folder(tmp_path):
    (tmp_path / "x.tfrecord.index").write_bytes(b"")
    with pytest.raises(ValueError, match=r"holds no shards \(files named \*\.tfrecord"):
        Shards(tmp_path)
    with pytest.raises(ValueError, match="empty list"):
        Shards([])


# === Fuzz: only RecordError, never a hang ===


def read_everything(path):
    """Open and read every record; return how many were read, raising only RecordError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            r = ShardReader(path, max_record_bytes=1 << 16)
        except RecordError:
            return -1
    with r:
        n = 0
        for i in range(len(r)):
            try:
                r.read(i)
                n += 1
            except RecordError:
                pass
        try:
            r.read_many(range(len(r)))
        except RecordError:
            pass
        return n


def read_bytes_as_shard(data: bytes) -> int:
    """`read_everything` on a shard file holding exactly `data`."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.tfrecord"
        path.write_bytes(data)
        return read_everything(path)


FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_random_bytes(data):
    read_bytes_as_shard(data)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 2**64 - 1), st.binary(max_size=80)), max_size=4))
def test_fuzz_headers_with_valid_crcs(parts):
    """Length fields that pass their CRC but lie about the size: bounded, never a hang."""
    data = b"".join(
        struct.pack("<Q", n) + struct.pack("<I", masked_crc32c(struct.pack("<Q", n))) + tail for n, tail in parts
    )
    read_bytes_as_shard(data)


@FUZZ
@given(
    st.lists(st.binary(max_size=40), min_size=1, max_size=6),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
    st.integers(0, 10**6),
    st.booleans(),
)
def test_fuzz_mutated_shards(items, flips, cut, keep_index):
    with tempfile.TemporaryDirectory() as d:
        path = write_shard(Path(d) / "x.tfrecord", items)
        if not keep_index:
            index_path(path).unlink()
        raw = bytearray(path.read_bytes())
        for pos, value in flips:
            raw[pos % len(raw)] = value
        raw = raw[: len(raw) - cut % (len(raw) + 1)] if cut % 3 == 0 else raw
        path.write_bytes(bytes(raw))
        n = read_everything(path)
        if not flips and cut % 3 != 0:
            assert n == len(items)


def test_record_error_pickles_with_its_location(tmp_path):
    import pickle

    err = RecordError("payload fails its CRC", tmp_path / "a.tfrecord", 3, 120)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is RecordError and str(back) == str(err)
    assert (back.path, back.index, back.offset, back.reason) == (err.path, 3, 120, "payload fails its CRC")


def test_reads_without_pread(tmp_path, monkeypatch):
    import layerkit.records.shardbytes as shardbytes

    items = payloads(30)
    path = write_shard(tmp_path / "a.tfrecord", items)
    monkeypatch.setattr(shardbytes, "_HAS_PREAD", False)
    r = ShardReader(path)
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(r.read, range(30))) == items
