"""TFRecord shards without TensorFlow: framing, an offset index, a writer and readers.

A record is framed exactly as TensorFlow writes it::

    uint64 length (little-endian) | uint32 masked_crc32c(length bytes)
    payload (length bytes)        | uint32 masked_crc32c(payload)

Each shard ``NAME`` has an index side file ``NAME.index`` (in its folder's ``.layerkit/``, or
in the per-user cache for a folder layerkit did not write: `side_path`): an ``.npy`` array of
int64 byte offsets, one per record plus the shard's size, so record ``i`` is
``shard[offsets[i]:offsets[i + 1]]`` and can be read at random. A shard without
a (valid) index is scanned once, reading only the 12-byte headers.

A shard TensorFlow wrote with ``compression_type="GZIP"`` or ``"ZLIB"`` (a gzip or zlib stream
of those frames) is recognised by its first bytes, or named with ``compression=``, and
decompressed into memory once (at most `MAX_DECOMPRESSED_BYTES`, a bound a streaming first pass
checks before anything that large is held: `inflate`); its offsets, index and labels file then
refer to the decompressed bytes.

A shard is a local file or an object in a bucket (``gs://``, ``s3://``, ``https://``): the same
reader reads both, its bytes coming from `layerkit.records.shardbytes` (``os.pread`` on one
descriptor, or ranged GETs through a block cache), so one reader may serve many threads. Every fault raises `RecordError`, a `ValueError`
naming the shard, the record and its byte offset.
"""

import errno
import hashlib
import io
import os
import re
import stat
import struct
import warnings
import zlib
from pathlib import Path

import google_crc32c
import numpy as np

from layerkit import storage
from layerkit._atomic import atomic_write, fsync_dir, open_temp
from layerkit.records import shardbytes

HEADER_BYTES = 12  # uint64 length + uint32 masked CRC of the length
FOOTER_BYTES = 4  # uint32 masked CRC of the payload
FRAME_BYTES = HEADER_BYTES + FOOTER_BYTES
MAX_RECORD_BYTES = 64 * 1024 * 1024  # refuse larger length fields before allocating
MAX_COALESCED_READ = 8 * 1024 * 1024  # read_many joins neighbouring records up to this
MAX_DECOMPRESSED_BYTES = 1 << 30  # a GZIP/ZLIB shard is decompressed into memory, at most this much
COMPRESSIONS = ("", "GZIP", "ZLIB")  # TensorFlow's compression_type values ("": none)
INDEX_SUFFIX = ".index"
LABELS_SUFFIX = ".labels"  # the labels file beside a shard: layerkit.records.labels
DATASET_FILE = "dataset.json"  # a folder layerkit wrote: its side files are in its SIDE_FOLDER
SIDE_FOLDER = ".layerkit"  # OUT/.layerkit/NAME.index: no glob of TensorFlow's (train-*, *.tfrec*) matches it
SIDE_CACHE_ENV = "LAYERKIT_RECORDS_CACHE"  # side files of other shards: side_cache_dir()
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF


class RecordError(ValueError):
    """A shard, record or payload that is not what it should be.

    ``path``, ``index`` (record number) and ``offset`` (byte offset of the record)
    are kept as attributes and named in the message when known.
    """

    def __init__(self, message, path=None, index=None, offset=None):
        self.path, self.index, self.offset, self.reason = path, index, offset, message
        where = []
        if path is not None:
            where.append(storage.redact(path))
        if index is not None:
            where.append(f"record {index}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)

    def __reduce__(self):  # keep path/index/offset across processes (pickled by worker pools)
        return type(self), (self.reason, self.path, self.index, self.offset)


class UnreadableError(ValueError):
    """A file that cannot be opened at all (a symlink loop, no permission): one line naming it
    and why, no traceback (the CLI exits 2); not a `RecordError`, as nothing in it was read."""


# === Checksums ===


def crc32c(data) -> int:
    """CRC32C (Castagnoli) of a bytes-like object, as an int."""
    return google_crc32c.value(bytes(data) if not isinstance(data, bytes) else data)


def mask_crc(crc: int) -> int:
    """TensorFlow's checksum mask: rotate right by 15 bits, add a constant (mod 2**32)."""
    return ((((crc >> 15) | (crc << 17)) & _U32) + _MASK_DELTA) & _U32


def masked_crc32c(data) -> int:
    return mask_crc(crc32c(data))


def _mask(crc: np.ndarray) -> np.ndarray:
    """`mask_crc` of an int64 array of CRCs."""
    crc = crc.astype(np.uint64)
    return ((((crc >> np.uint64(15)) | (crc << np.uint64(17))) & np.uint64(_U32)) + np.uint64(_MASK_DELTA)
            ).astype(np.int64) & _U32


def _gather_le(raw: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """The little-endian unsigned ints of `width` bytes (4 or 8) at byte offsets `at` of `raw`, as int64."""
    return raw[at[:, None] + np.arange(width)].copy().view(f"<u{width}").reshape(-1).astype(np.int64)


def encode_record(payload) -> bytes:
    """One framed record: header, payload, footer."""
    payload = bytes(payload)
    length = struct.pack("<Q", len(payload))
    return b"".join(
        (length, struct.pack("<I", masked_crc32c(length)), payload, struct.pack("<I", masked_crc32c(payload)))
    )


def _check_max(max_record_bytes) -> int:
    if not isinstance(max_record_bytes, int) or max_record_bytes < 0:
        raise ValueError(f"max_record_bytes must be a non-negative int, got {max_record_bytes!r}")
    return max_record_bytes


def parse_header(header: bytes, offset: int, size: int, max_record_bytes: int, path=None, index=None) -> int:
    """Check a 12-byte header read at `offset` of a `size`-byte shard; return the payload length."""
    if len(header) < HEADER_BYTES:
        raise RecordError(
            f"truncated shard: {len(header)} bytes left where a {HEADER_BYTES}-byte record header was expected",
            path, index, offset,
        )
    length_bytes, length_crc = header[:8], struct.unpack_from("<I", header, 8)[0]
    if masked_crc32c(length_bytes) != length_crc:
        raise RecordError(
            f"length field fails its CRC (stored {length_crc:#010x}, computed "
            f"{masked_crc32c(length_bytes):#010x}): corrupt header or not a TFRecord file",
            path, index, offset,
        )
    length = struct.unpack("<Q", length_bytes)[0]
    if length > max_record_bytes:
        raise RecordError(
            f"length field says {length} bytes, above the limit of {max_record_bytes} "
            "(pass max_record_bytes= to allow larger records)",
            path, index, offset,
        )
    remaining = size - offset - HEADER_BYTES
    if length + FOOTER_BYTES > remaining:
        raise RecordError(
            f"truncated shard: record needs {length + FOOTER_BYTES} bytes after its header, "
            f"only {remaining} remain",
            path, index, offset,
        )
    return length


def decode_record(frame, path=None, index=None, offset=None, max_record_bytes=MAX_RECORD_BYTES) -> bytes:
    """Check one whole framed record (header, payload, footer) and return its payload."""
    frame = memoryview(frame)
    try:
        length = parse_header(bytes(frame[:HEADER_BYTES]), 0, len(frame), max_record_bytes, path, index)
    except RecordError as err:  # parse_header saw offset 0 of the frame: name the record's own
        raise RecordError(err.reason, path, index, offset) from None
    if HEADER_BYTES + length + FOOTER_BYTES != len(frame):
        raise RecordError(
            f"length field says {length} payload bytes but the index gives the record "
            f"{len(frame) - FRAME_BYTES}: shard and index disagree",
            path, index, offset,
        )
    payload = bytes(frame[HEADER_BYTES : HEADER_BYTES + length])
    stored = struct.unpack_from("<I", frame, HEADER_BYTES + length)[0]
    computed = masked_crc32c(payload)
    if stored != computed:
        raise RecordError(
            f"payload of {length} bytes fails its CRC (stored {stored:#010x}, computed {computed:#010x})",
            path, index, offset,
        )
    return payload


# === Index ===


def index_path(shard, ours: bool | None = None):
    """Where `shard`'s offset index is (or goes): `side_path`."""
    return side_path(shard, INDEX_SUFFIX, ours)


def as_path(path):
    """A URL stays a str (a `pathlib.Path` would fold its ``//``); a local path becomes a `Path`."""
    return str(path) if storage.is_remote(path) else Path(path)


def split_path(path):
    """(folder, name) of a local path or a URL."""
    if storage.is_remote(path):
        return storage.parent(path), storage.name(path)
    path = Path(path)
    return path.parent, path.name


def join_path(folder, *names):
    """`folder` / `names`, for a local folder or a URL."""
    return storage.join(folder, *names) if storage.is_remote(folder) else Path(folder).joinpath(*names)


_OURS = set()  # remote folders found holding a dataset.json (one stays layerkit's)


def is_layerkit_folder(folder) -> bool:
    """Whether `folder` (local or a URL) holds a ``dataset.json``: layerkit wrote it."""
    if not storage.is_remote(folder):
        return os.path.lexists(Path(folder) / DATASET_FILE)
    folder = str(folder).rstrip("/")
    if folder not in _OURS and storage.exists(storage.join(folder, DATASET_FILE)):
        _OURS.add(folder)
    return folder in _OURS


def side_path(shard, suffix: str, ours: bool | None = None):
    """Where `shard`'s side file (``.index``, ``.labels``) is, or is written.

    In a folder layerkit wrote (it holds a ``dataset.json``), in its subfolder `SIDE_FOLDER`
    (``OUT/.layerkit/NAME.index``), where no glob of TensorFlow's (``train-*``, ``*.tfrec*``,
    ``OUT/*.tfrecord``) matches it; a local side file already there, or beside the shard (the
    layout before: ``NAME.index``), is used where it is. For any other shard (TensorFlow's, a
    read-only folder's, a public bucket's) in the per-user cache `side_cache_dir`, named after
    the shard's identity (local: real path, size, modification time, inode; remote: URL, size
    and version, the GCS generation or S3 ETag), so that the folder is left as it was and needs
    no write access. A shard changed since is another identity (the old entry is never read
    for it). `ours`: True for the writer's own shards (the dataset.json comes last)."""
    folder, name = split_path(shard)
    new = join_path(folder, SIDE_FOLDER, name + suffix)
    if storage.is_remote(shard):
        return new if ours or (ours is None and is_layerkit_folder(folder)) else _cached_side(shard, name + suffix)
    old = folder / (name + suffix)
    if ours or os.path.lexists(new):
        return new
    if os.path.lexists(old):
        return old
    if ours is None and os.path.lexists(folder / DATASET_FILE):
        return new
    return _cached_side(shard, name + suffix) or old


def _cached_side(shard, name: str):
    """The per-user cache's entry for side file `name` of `shard`, keyed by its identity
    (None: no local shard to name; its opening says so)."""
    if storage.is_remote(shard):
        url = str(shard)
        if url not in shardbytes.IDENTITY:
            got = storage.info(url)
            shardbytes.IDENTITY[url] = (got["size"], got["version"])
        size, version = shardbytes.IDENTITY[url]
        key = f"{url.split('?', 1)[0]}\0{size}\0{version}"  # a signed URL's token changes, the object not
    else:
        try:
            st = os.stat(shard)
        except OSError:
            return None
        key = f"{os.path.realpath(shard)}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_dev}"
    return side_cache_dir() / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:24]}"


def side_cache_dir(environ=None) -> Path:
    """The per-user folder of side files for shards layerkit did not write:
    ``$LAYERKIT_RECORDS_CACHE``, else ``$XDG_CACHE_HOME/layerkit/records``
    (``~/.cache/layerkit/records``). Nothing there is trusted: every side file is checked
    against its shard when read (sizes, offsets, checksums) and rebuilt from it otherwise."""
    environ = os.environ if environ is None else environ
    chosen = environ.get(SIDE_CACHE_ENV)
    if chosen:
        return Path(chosen).expanduser()
    return Path(environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser()) / "layerkit" / "records"


def scan_offsets(path, max_record_bytes=MAX_RECORD_BYTES) -> np.ndarray:
    """Offsets of every record of an uncompressed shard plus its size (int64, n + 1), reading
    headers only. Checks each length field's CRC and bounds; payload CRCs are checked when read.
    """
    path = os.fspath(path)
    max_record_bytes = _check_max(max_record_bytes)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
    with open(fd, "rb") as f:  # non-blocking open: a FIFO in a shard's place is refused, never waited on
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise RecordError("expected a shard (a regular file), found something else", path)

        def read_at(n, offset):
            f.seek(offset)
            return f.read(n)

        return _scan(read_at, st.st_size, max_record_bytes, path)


def _scan(read_at, size, max_record_bytes, path) -> np.ndarray:
    offsets = [0]
    offset = 0
    while offset < size:
        length = parse_header(read_at(HEADER_BYTES, offset), offset, size, max_record_bytes, path, len(offsets) - 1)
        offset += length + FRAME_BYTES
        offsets.append(offset)
    return np.asarray(offsets, np.int64)


# === Compression ===


def check_compression(compression) -> str | None:
    """None (detect) or one of `COMPRESSIONS`; "none" and lower case are accepted."""
    if compression is None:
        return None
    name = str(compression).upper()
    name = "" if name == "NONE" else name
    if name not in COMPRESSIONS:
        raise ValueError(f"compression must be GZIP, ZLIB, none or None (detect), as TensorFlow's "
                         f"compression_type. Received: compression={compression!r}")
    return name


def detect_compression(head: bytes) -> str:
    """"" (plain TFRecord framing), "GZIP" or "ZLIB" from a shard's first 12 bytes. A valid
    length CRC means plain framing (a chance match is 1 in 2**32), else the stream's magic."""
    if len(head) >= HEADER_BYTES and masked_crc32c(head[:8]) == struct.unpack_from("<I", head, 8)[0]:
        return ""
    if head[:2] == b"\x1f\x8b":
        return "GZIP"
    if len(head) >= 2 and head[0] & 0x0F == 8 and head[0] >> 4 <= 7 and ((head[0] << 8) | head[1]) % 31 == 0:
        return "ZLIB"
    return ""  # not compressed either: the framing check reports what is wrong


INFLATE_CHUNK = 1 << 20  # compressed bytes read, and decompressed bytes made, per step of `inflate`


def inflate(src, compression: str, path=None, limit: int = MAX_DECOMPRESSED_BYTES, size: int | None = None) -> bytearray:
    """The TFRecord bytes inside the GZIP or ZLIB shard whose bytes `src` reads
    (`layerkit.records.shardbytes`: a local file or a remote object), refusing more than `limit`.

    Streamed: the compressed file is read, and inflated, `INFLATE_CHUNK` bytes at a time. A
    first pass only counts what the stream inflates to, holding no more than a chunk, so a
    bomb is refused past `limit` at bounded memory (about 10 MB over the process's, measured:
    docs/benchmarks.md); the second inflates into one buffer of exactly that size. With the
    `size` already known (a reader reopened in a worker process) the first pass is skipped,
    and a stream that inflates to another size raises `RecordError`: the shard changed.
    """
    if size is None:
        size = _inflate(src, compression, path, limit, None)
    out = bytearray(size)
    if _inflate(src, compression, path, size, out) != size:
        raise RecordError(f"the {compression} shard changed while it was read: it no longer inflates to "
                          f"{size} bytes", path)
    return out


def _inflate(src, compression, path, limit, out) -> int:
    """One pass of `inflate`: how many bytes the stream `src` reads inflates to (and, with `out`,
    those bytes written into it); past `limit` (or `out`'s size) a `RecordError`."""
    d = zlib.decompressobj(wbits=31 if compression == "GZIP" else 15)
    total = pos = 0
    file_size = src.size
    while not d.eof:
        data = src.read(INFLATE_CHUNK, pos)
        pos += len(data)
        if not data:
            raise RecordError(f"truncated {compression} stream: it ends before its end marker "
                              f"({pos} compressed bytes, {total} decompressed)", path)
        while data and not d.eof:
            try:
                piece = d.decompress(data, INFLATE_CHUNK)
            except zlib.error as err:
                raise RecordError(f"corrupt {compression} stream: {err}", path) from None
            data = d.unconsumed_tail
            if total + len(piece) > limit:
                if out is not None:
                    raise RecordError(f"the {compression} shard changed while it was read: it inflates to more "
                                      f"than {limit} bytes now", path)
                raise RecordError(f"the {compression} shard decompresses to more than {limit} bytes, the limit for "
                                  "a compressed shard (read into memory); pass max_decompressed_bytes= to allow "
                                  "more, or write the records uncompressed", path)
            if out is not None:
                out[total : total + len(piece)] = piece
            total += len(piece)
    trailing = len(d.unused_data) + len(data) + max(file_size - pos, 0)
    if trailing:
        raise RecordError(f"{trailing} bytes follow the end of the {compression} stream", path)
    return total


def check_offsets(offsets, size: int) -> str | None:
    """Why `offsets` cannot index a `size`-byte shard, or None if it can."""
    if not isinstance(offsets, np.ndarray) or offsets.ndim != 1 or offsets.dtype != np.int64:
        return f"expected a 1-D int64 array, got {getattr(offsets, 'dtype', type(offsets).__name__)} {getattr(offsets, 'shape', '')}"
    if len(offsets) == 0 or offsets[0] != 0:
        return "offsets must start at 0"
    if offsets[-1] != size:
        return f"offsets end at {int(offsets[-1])} but the shard has {size} bytes (stale index?)"
    if len(offsets) > 1 and np.any(np.diff(offsets) < FRAME_BYTES):
        return f"offsets must rise by at least {FRAME_BYTES} bytes per record"
    return None


def _npy_int64(data: bytes) -> np.ndarray:
    """A 1-D little-endian int64 `.npy` from bytes; its header is checked against the data
    before anything is allocated (np.load would allocate whatever shape the header claims)."""
    f = io.BytesIO(data)
    version = np.lib.format.read_magic(f)
    header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = header(f)
    if dtype != np.dtype("<i8") or len(shape) != 1 or fortran:
        raise ValueError(f"expected a 1-D little-endian int64 array, got {dtype} of shape {shape}")
    body = data[f.tell() :]
    if len(body) != 8 * shape[0]:
        raise ValueError(f"header claims {shape[0]} offsets, the file holds {len(body)} bytes of data")
    return np.frombuffer(body, "<i8").astype(np.int64)


def read_regular(path, limit: int | None = None, what: str = "a file") -> bytes:
    """The bytes of `path` (at most ``limit + 1`` of them), which must be a regular file.

    Opened non-blocking and checked with fstat before any read, so a FIFO, a device or a
    folder in its place is refused (`RecordError` naming it) instead of hanging or raising
    `IsADirectoryError`. A missing file raises `FileNotFoundError`; one that cannot be opened
    (a symlink loop, no permission) `UnreadableError`.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except IsADirectoryError:
        raise RecordError(f"expected {what} (a regular file), found a folder", path) from None
    except FileNotFoundError:
        raise
    except OSError as err:  # a symlink loop, no permission, ...: unreadable, not a fault in the data
        raise UnreadableError(f"{path}: cannot read {what}: {err.strerror or err}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
            raise RecordError(f"expected {what} (a regular file), found {kind}", path)
        chunks, got = [], 0
        while limit is None or got <= limit:
            chunk = os.read(fd, 1 << 20 if limit is None else min(1 << 20, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


MISSING = "missing"  # read_npy_int64's reason for a side file that is not there


def read_bounded(path, limit: int | None, what: str) -> bytes:
    """`read_regular` of a local path; the object of a URL, refused (`StorageError`) above
    `limit` bytes by its size, unread. A missing one raises `FileNotFoundError`."""
    if storage.is_remote(path):
        return storage.read(str(path), limit)
    return read_regular(path, limit, what)


def read_npy_int64(path, limit: int, what: str) -> tuple[np.ndarray | None, str | None]:
    """(array, None) from a side file of at most `limit` bytes holding a 1-D int64 `.npy`, or
    (None, why not). Reads at most limit + 1 bytes, whatever the file claims; a FIFO or other
    non-regular file in its place is never opened for reading (no hang). A side file that is
    not there is ``(None, MISSING)``."""
    try:
        data = read_bounded(path, limit, "an .npy side file")
        if len(data) > limit:
            return None, f"{path} is larger than {what} can be"
        return _npy_int64(data), None
    except FileNotFoundError:
        return None, MISSING
    except (RecordError, storage.StorageError) as err:
        return None, str(err)
    except Exception as err:  # noqa: BLE001 - any unreadable side file is rebuilt from the shard
        return None, f"{path} is not an .npy array: {type(err).__name__}: {err}"


def load_index(path, size: int) -> tuple[np.ndarray | None, str | None]:
    """(offsets, None) from a shard's index file, or (None, why not) if absent or invalid."""
    ipath = index_path(path)
    if not storage.is_remote(ipath) and not os.path.lexists(ipath):
        return None, "no index"
    limit = 8 * (size // FRAME_BYTES + 2) + 4096  # n + 1 int64 offsets and an .npy header
    offsets, why = read_npy_int64(ipath, limit, f"an index of a {size}-byte shard")
    if offsets is None:
        return None, "no index" if why == MISSING else why
    problem = check_offsets(offsets, size)
    return (None, f"{ipath}: {problem}") if problem else (offsets, None)


def write_index(path, offsets=None, max_record_bytes=MAX_RECORD_BYTES, size=None, ours=None) -> np.ndarray:
    """Write the shard's index (scanning the shard when `offsets` is not given) where `index_path`
    puts it; return the offsets. `size` is the shard's size (decompressed, for a compressed
    shard); default: the file's. `ours`: as `side_path`'s."""
    if offsets is None:
        offsets = scan_offsets(path, max_record_bytes)
    offsets = np.asarray(offsets, np.int64)
    problem = check_offsets(offsets, os.path.getsize(path) if size is None else size)
    if problem:
        raise RecordError(f"cannot write index: {problem}", path)
    write_side_file(index_path(path, ours), lambda f: np.save(f, offsets, allow_pickle=False))
    return offsets


def write_side_file(where, content) -> None:
    """`atomic_write` of a local side file (the per-user cache folder is made private, a
    folder's `SIDE_FOLDER` when needed); one request putting a remote one (readers see the old
    object or the new)."""
    if storage.is_remote(where):
        buf = io.BytesIO()
        content(buf)
        storage.write(str(where), buf.getvalue())
        return
    if not where.parent.exists():
        if where.parent == side_cache_dir():
            where.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
        elif where.parent.name == SIDE_FOLDER:
            where.parent.mkdir(exist_ok=True)
    atomic_write(where, content)


# === Writer ===


class ShardWriter:
    """Write records to one shard; it appears at `path` (with its index) only on a clean close.

    Records go to a temporary file in the same folder, renamed over `path` by
    `close()`: a crash or an exception inside ``with`` leaves no partial shard.

        with ShardWriter("out/train-00000-of-00004.tfrecord") as w:
            w.write(payload)
    """

    def __init__(self, path, max_record_bytes=MAX_RECORD_BYTES, index=True):
        self.path = Path(path)
        self.max_record_bytes = _check_max(max_record_bytes)
        self.index = index
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"folder for shard {self.path} does not exist")
        fd, self._tmp = open_temp(self.path)
        self._file = os.fdopen(fd, "wb")
        self._offsets = [0]
        self.closed = False

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @property
    def offsets(self) -> np.ndarray:
        """Byte offsets of the records written so far, plus the end (int64, n + 1)."""
        return np.asarray(self._offsets, np.int64)

    def write(self, payload) -> int:
        """Append one record; return its index in the shard."""
        if self.closed:
            raise ValueError(f"shard {self.path} is already closed")
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"a record payload must be bytes-like, got {type(payload).__name__}")
        if len(payload) > self.max_record_bytes:
            raise RecordError(
                f"payload of {len(payload)} bytes exceeds max_record_bytes={self.max_record_bytes}",
                self.path, len(self),
            )
        frame = encode_record(payload)
        self._file.write(frame)
        self._offsets.append(self._offsets[-1] + len(frame))
        return len(self) - 1

    def close(self) -> None:
        """Flush, fsync and move the shard into place, then write its index."""
        if self.closed:
            return
        self.closed = True
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            folder, name = split_path(self.path)
            for stale in (index_path(self.path, ours=True), folder / (name + INDEX_SUFFIX)):  # new place, old
                if stale.is_dir() and not stale.is_symlink():
                    raise RecordError("a folder stands where the shard's index goes", stale)
                if os.path.lexists(stale):
                    stale.unlink()  # never leave an old index beside a new shard
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        if self.index:
            write_index(self.path, self._offsets, ours=True)
            fsync_dir(self.path.parent)  # the shard's rename (the index's fsynced its own folder)
        else:
            fsync_dir(self.path.parent)

    def abort(self) -> None:
        """Drop everything written; `path` is left as it was."""
        self.closed = True
        if not self._file.closed:
            self._file.close()
        if os.path.exists(self._tmp):
            os.remove(self._tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self):
        if not getattr(self, "closed", True):
            self.abort()


# === Readers ===

def record_indices(indices, n: int, where: str) -> np.ndarray:
    """`indices` (a sequence, range or integer array; an int is one index) as a 1-D int64 array
    within 0..n-1, negative ones counted from the end. A non-integer index is a `TypeError`, one
    outside -n..n-1 an `IndexError`, each naming it and `where` (what holds the n records)."""
    if isinstance(indices, range):
        indices = np.arange(indices.start, indices.stop, indices.step)
    if not isinstance(indices, np.ndarray):
        items = list(indices) if isinstance(indices, (list, tuple)) else [indices]
        for i in items:
            if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
                raise TypeError(f"record index must be an int, got {type(i).__name__} {i!r} (reading {where})")
        indices = np.asarray(items, np.int64)
    elif indices.size and (indices.dtype == bool or not np.issubdtype(indices.dtype, np.integer)):
        raise TypeError(f"record indices must be ints, got an array of {indices.dtype} (reading {where})")
    idx = indices.astype(np.int64).reshape(-1)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        bad = int(idx[(idx < -n) | (idx >= n)][0])
        raise IndexError(f"record {bad} out of range for {where}")
    return idx % max(n, 1)


class ShardReader:
    """Random access to the records of one shard: ``len``, ``read(i)``, ``read_many``, iteration.

    `path`: a local file or a ``gs://``, ``s3://`` or ``https://`` object, read by the same
    code (its bytes from `layerkit.records.shardbytes`: positional reads, or ranged GETs
    through a block cache). Uses the shard's ``.index`` side file (`index_path`) when it is
    valid, else scans the shard's headers once (``index_source`` tells which). Safe to share
    between threads; pickled (worker processes), it reopens the shard there and refuses one
    that changed.

    `compression`: None (detect from the first bytes), "" (none), "GZIP" or "ZLIB", as
    TensorFlow's ``compression_type``; a compressed shard is decompressed into memory once
    (refused above `max_decompressed_bytes`, default `MAX_DECOMPRESSED_BYTES`) and `size` is then
    its decompressed size (`file_size` is the stored one).
    """

    def __init__(self, path, max_record_bytes=MAX_RECORD_BYTES, compression=None, max_decompressed_bytes=None):
        self.path = as_path(path)
        self.max_record_bytes = _check_max(max_record_bytes)
        compression = check_compression(compression)
        self._raw = self._src = None  # the stored bytes; what records are read from (raw, or inflated)
        self._stale = None  # why the index is stale, once a read found out
        self._raw = _open_raw(self.path)
        try:
            self.size = self.file_size = self._raw.size
            if compression is None:
                compression = detect_compression(self._raw.peek(HEADER_BYTES, 0))
            self.compression = compression
            self._src = self._raw
            if compression:
                limit = MAX_DECOMPRESSED_BYTES if max_decompressed_bytes is None else max_decompressed_bytes
                self._src = _Inflated(inflate(self._raw, compression, self.path, limit))
                self.size = self._src.size
            offsets, why = load_index(self.path, self.size)
            if offsets is None:
                if why != "no index":
                    warnings.warn(f"ignoring invalid index: {why}; scanning the shard", stacklevel=2)
                offsets = self._scan()
                self.index_source = "scan" if why == "no index" else f"scan ({why})"
            else:
                self.index_source = "index"
        except BaseException:
            self.close()
            raise
        self.offsets = offsets
        self.offsets.setflags(write=False)

    @property
    def remote(self) -> bool:
        """Whether the records are read from a bucket (not a local file, nor inflated in memory)."""
        return self._src is not None and self._src.remote

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __repr__(self) -> str:
        return f"ShardReader({storage.redact(self.path)!r}, records={len(self)})"

    def __getstate__(self):  # for worker processes: reopened there with the offsets known here
        return {"path": self.path, "max_record_bytes": self.max_record_bytes, "offsets": self.offsets,
                "size": self.size, "file_size": self.file_size, "compression": self.compression,
                "index_source": self.index_source, "version": getattr(self._raw, "version", None)}

    def __setstate__(self, state):
        version = state.pop("version")
        self.__dict__.update(state)
        self._stale = self._raw = self._src = None
        self._raw = _open_raw(self.path, (self.file_size, version))
        self._src = self._raw
        if self.compression:
            self._src = _Inflated(inflate(self._raw, self.compression, self.path, self.size, size=self.size))

    def _read_at(self, n, offset) -> bytes:
        return self._src.read(n, offset)

    def _peek(self, n, offset) -> bytes:
        """A few bytes at `offset` (a remote shard's: without fetching a block for them)."""
        return self._src.peek(n, offset)

    def _scan(self) -> np.ndarray:
        if self._src is self._raw and not self._raw.remote:
            return scan_offsets(self.path, self.max_record_bytes)  # buffered reads of the headers
        return _scan(self._read_at, self.size, self.max_record_bytes, self.path)

    def _decode(self, frame, i) -> bytes:
        try:
            return decode_record(frame, self.path, i, int(self.offsets[i]), self.max_record_bytes)
        except RecordError as err:
            if self.index_source == "index":
                why = self._stale_index()
                if why:
                    raise RecordError(why, self.path, i, int(self.offsets[i])) from err
            raise

    def _stale_index(self) -> str | None:
        """Why the index file no longer describes the shard (a scan of the headers finds other
        offsets), or None if it does or the shard does not scan either (then it is corrupt)."""
        if self._stale is None:
            try:
                scanned = self._scan()
            except (RecordError, OSError):
                self._stale = ""
            else:
                if len(scanned) == len(self.offsets) and (scanned == self.offsets).all():
                    self._stale = ""
                else:
                    m = min(len(scanned), len(self.offsets))
                    k = int(np.argmax(scanned[:m] != self.offsets[:m])) if (scanned[:m] != self.offsets[:m]).any() else m - 1
                    self._stale = (
                        f"the index {split_path(index_path(self.path))[1]} is stale: it gives {len(self.offsets) - 1} "
                        f"records, the shard's headers give {len(scanned) - 1} (first difference at record {k}: "
                        f"byte offset {int(self.offsets[k]) if k < len(self.offsets) else '-'} in the index, "
                        f"{int(scanned[k]) if k < len(scanned) else '-'} in the shard). The shard was rewritten "
                        "after its index was: delete the index (the shard is then scanned) or run "
                        "`layerkit records index`"
                    )
        return self._stale or None

    def read(self, i) -> bytes:
        """Payload of record `i`, its CRCs checked."""
        return self.read_many([i])[0]

    def read_many(self, indices, with_crc: bool = False):
        """Payloads of several records, in the order asked (repeats allowed); see `read_records`.
        With `with_crc`, ``(payloads, crcs)``: also the masked CRC-32C stored in each frame."""
        wanted = record_indices(indices, len(self), f"shard {self.path} of {len(self)} records")
        return read_records([self], np.zeros(len(wanted), np.int64), wanted, with_crc)

    def _runs(self, order: np.ndarray):
        """The byte ranges to read for records `order` (sorted, unique): neighbours share one up
        to about `MAX_COALESCED_READ` bytes; and where each frame begins and ends in the
        ranges' concatenation. Returns (range starts, range ends, frame starts, frame ends)."""
        starts, ends = self.offsets[order], self.offsets[order + 1]
        run_start = np.ones(len(order), bool)
        run_start[1:] = order[1:] != order[:-1] + 1
        first = np.maximum.accumulate(np.where(run_start, np.arange(len(order)), 0))
        chunk = (ends - starts[first] - 1) // MAX_COALESCED_READ  # a run is cut at each multiple
        run_start[1:] |= chunk[1:] != chunk[:-1]
        heads = np.flatnonzero(run_start)
        tails = np.append(heads[1:], len(order)) - 1
        place = np.concatenate([[0], np.cumsum(ends[tails] - starts[heads])[:-1]])
        run = np.cumsum(run_start) - 1
        lo = starts - starts[heads][run] + place[run]
        return starts[heads], ends[tails], lo, lo + (ends - starts), order[heads]

    def __iter__(self):
        step = 256
        for lo in range(0, len(self), step):
            yield from self.read_many(range(lo, min(lo + step, len(self))))

    def close(self) -> None:
        raw, self._raw, self._src = self._raw, None, None
        if raw is not None:
            raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_raw", None) is not None:
            self.close()


class _Inflated:
    """A compressed shard's records, inflated in memory: read like its stored bytes."""

    remote = False

    def __init__(self, data):
        self._data, self.size = data, len(data)

    def read(self, n, offset) -> bytes:
        return bytes(memoryview(self._data)[offset : offset + n])

    peek = read


def _open_raw(path, expect=None):
    """The stored bytes of shard `path` (`shardbytes.LocalBytes` or `RemoteBytes`); `expect`:
    (size, version) it had when first opened (a reopening in a worker process). A missing
    shard is `FileNotFoundError`, a folder, FIFO or device in its place a `RecordError`, never
    opened in a way that blocks."""
    if storage.is_remote(path):
        try:
            return shardbytes.RemoteBytes(path, expect)
        except FileNotFoundError:
            raise FileNotFoundError(f"shard {storage.redact(path)} does not exist") from None
        except IsADirectoryError:
            raise RecordError("expected a shard (an object), found a folder (a prefix)", path) from None
        except shardbytes.ChangedError as err:
            raise RecordError(str(err), path) from None
    if not os.path.lexists(path):
        raise FileNotFoundError(f"shard {path} does not exist")
    if not Path(path).is_file():  # a folder, FIFO or device: never opened (a FIFO would block)
        raise RecordError("expected a shard (a regular file), found something else", path)
    try:
        return shardbytes.LocalBytes(path, None if expect is None else expect[0])
    except shardbytes.NotARegularFile:
        raise RecordError("expected a shard (a regular file), found something else", path) from None
    except shardbytes.ChangedError as err:
        raise RecordError(f"{err}", path) from None


def read_records(readers, shard: np.ndarray, local: np.ndarray, with_crc: bool = False):
    """The payloads of records ``readers[shard[k]]``'s ``local[k]`` in that order (repeats
    allowed), every frame checked as `decode_record` would: its length field against the
    index, both CRCs, the record size limit. Each record is read once (neighbours share a
    read; the ranges of remote shards, of every shard of the batch, are fetched in one
    concurrent call: `shardbytes.fetch`, through the block cache when the remote shards of
    `readers` fit it); the checks run on the whole batch at once, and a frame that fails one
    is handed to `decode_record`, which raises `RecordError` naming what is wrong. With
    `with_crc`, ``(payloads, crcs)``: also the masked CRC-32C stored in each frame (int64)."""
    if len(local) == 0:
        return ([], np.empty(0, np.int64)) if with_crc else []
    width = int(local.max()) + 1
    keys, inverse = np.unique(shard * width + local, return_inverse=True)
    order_shard, order_local = keys // width, keys % width
    requests, frames, used = [], [], []
    for s in np.unique(order_shard).tolist():
        reader = readers[s]
        a, b, lo, hi, first = reader._runs(order_local[order_shard == s])
        requests.append((reader._src, a.tolist(), b.tolist()))
        frames.append((lo, hi, first))
        used.append(reader)
    got = shardbytes.fetch(requests, blocks=_fits_cache(readers) if any(r.remote for r in used) else True)
    blocks, lo, hi, limit, size = [], [], [], [], 0
    for reader, (_, a, b), (f_lo, f_hi, first), data in zip(used, requests, frames, got):
        for k, (block, x, y) in enumerate(zip(data, a, b)):
            if len(block) != y - x:
                raise RecordError(f"shard shrank while reading: got {len(block)} of {y - x} bytes",
                                  reader.path, int(first[k]), x)
        blocks += data
        lo.append(f_lo + size)
        hi.append(f_hi + size)
        limit.append(np.full(len(f_lo), reader.max_record_bytes, np.int64))
        size += sum(len(g) for g in data)
    buf = bytes(blocks[0]) if len(blocks) == 1 else b"".join(blocks)
    lo, hi, limit = np.concatenate(lo), np.concatenate(hi), np.concatenate(limit)
    raw = np.frombuffer(buf, np.uint8)
    length, length_crc, stored = _gather_le(raw, lo, 8), _gather_le(raw, lo + 8, 4), _gather_le(raw, hi - 4, 4)
    lo_l, hi_l = lo.tolist(), hi.tolist()
    payloads = [buf[a + HEADER_BYTES : b - FOOTER_BYTES] for a, b in zip(lo_l, hi_l)]
    computed = np.fromiter(map(google_crc32c.value, payloads), np.int64, len(payloads))
    computed_length = np.fromiter((google_crc32c.value(buf[a : a + 8]) for a in lo_l), np.int64, len(lo_l))
    bad = ((length != hi - lo - FRAME_BYTES) | (length > limit)
           | (_mask(computed_length) != length_crc) | (_mask(computed) != stored))
    for k in np.flatnonzero(bad).tolist():
        reader, j = readers[int(order_shard[k])], int(order_local[k])
        reader._decode(memoryview(buf)[lo_l[k] : hi_l[k]], j)  # raises, naming the fault
        raise RecordError("frame failed a batch check that decode_record passed", reader.path, j, int(reader.offsets[j]))
    inverse = inverse.reshape(-1).tolist()
    out = [payloads[k] for k in inverse]
    return (out, stored[inverse]) if with_crc else out

def _fits_cache(readers) -> bool:
    """Whether the remote shards among `readers` fit the block cache together (then every block
    is fetched once and kept), or records are fetched exactly, batch by batch."""
    total = sum(r._raw.size for r in readers if r.remote)
    return total <= shardbytes.CACHE.limit()


SHARD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrec", ".tfrecord.gz", ".tfrecords.gz", ".tfrec.gz")
# name-00000-of-00010, train.tfrecord-00000-of-00010, Apache Beam's name-00000-of-00010.gz
_NUMBERED = re.compile(r"-\d+-of-\d+(\.gz)?$")
_IN_SET = re.compile(r"^(?P<stem>.*)-(?P<k>\d+)-of-(?P<n>\d+)(?P<tail>(\.[A-Za-z0-9]+)*)$")


def is_shard_name(name: str) -> bool:
    """The one shard-name rule (a folder's shards are the regular files it accepts):
    ``*.tfrecord``, ``*.tfrecords``, ``*.tfrec``, each also with ``.gz`` (Apache Beam's GZIP
    shards), and ``NAME-NNNNN-of-NNNNN`` (or ``NAME-NNNNN-of-NNNNN.gz``), not hidden, not an
    ``.index`` or ``.labels`` side file. A file named explicitly is read whatever its name."""
    if name.startswith(".") or name.endswith((INDEX_SUFFIX, LABELS_SUFFIX)):
        return False
    return name.endswith(SHARD_SUFFIXES) or bool(_NUMBERED.search(name))


def _not_a_file(path: Path) -> str:
    """What stands at `path` instead of a regular file (following symbolic links)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a dangling symbolic link"
    except OSError as err:
        return "a symbolic link loop" if err.errno == errno.ELOOP else f"unreadable ({err.strerror or err})"
    return "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"


def check_shard_set(paths) -> None:
    """Refuse a folder's shards whose ``-NNNNN-of-NNNNN`` names say another set than the folder
    holds: a gap (`RecordError` naming the missing shard), a number past the count, or one name
    in two sets of different counts (shards left by another write). Names are grouped by what
    comes before the number and after the count; shards named otherwise are not checked."""
    sets = {}
    for p in paths:
        folder, name = split_path(p)
        m = _IN_SET.match(name)
        if m:
            sets.setdefault((folder, m["stem"], m["tail"]), []).append((m["k"], m["n"], as_path(p)))
    for (folder, stem, tail), members in sorted(sets.items(), key=lambda kv: str(kv[0])):
        counts = sorted({n for _, n, _ in members}, key=int)
        if len(counts) > 1:
            raise RecordError(f"shards named {stem}-*-of-{counts[0]}{tail} and {stem}-*-of-{counts[1]}{tail} lie side "
                              "by side: two sets (one left by another write?); keep one", folder)
        n_text = counts[0]
        held = {int(k): p for k, _, p in members}
        past = [(k, p) for k, p in sorted(held.items()) if k >= int(n_text)]
        if past:
            raise RecordError(f"its name says shard {past[0][0]} of a set of {int(n_text)}, numbered 0..{int(n_text) - 1}: "
                              "an extra shard (a copy?)", past[0][1])
        width = len(members[0][0])
        missing = [k for k in range(int(n_text)) if k not in held]
        if missing:
            name = f"{stem}-{missing[0]:0{width}d}-of-{n_text}{tail}"
            raise RecordError(f"shard {name} is missing: the names say {int(n_text)} shards (-of-{n_text}), the "
                              f"folder holds {len(held)}{f' (missing: {len(missing)})' if len(missing) > 1 else ''}",
                              join_path(folder, name))


def shard_paths(paths_or_dir) -> list:
    """Shard files named by a folder (its shard files, sorted by name), one path or a list of
    paths; each local one a `Path`, each URL a str. A bucket folder (``gs://B/PREFIX``) is
    listed (`remote_shard_paths`)."""
    if isinstance(paths_or_dir, (str, os.PathLike)) and storage.is_remote(paths_or_dir):
        return remote_shard_paths(str(paths_or_dir))
    if isinstance(paths_or_dir, (str, os.PathLike)):
        p = Path(paths_or_dir)
        if p.is_dir():
            named = sorted(f for f in p.iterdir() if is_shard_name(f.name))
            for f in named:  # never skipped unnoticed: its records would go missing
                if not f.is_file():
                    raise RecordError(f"named as a shard, but {_not_a_file(f)}: remove or rename it", f)
            paths = named
            if not paths:
                raise ValueError(
                    f"folder {p} holds no shards (files named *.tfrecord, *.tfrecords, *.tfrec, each also .gz, "
                    "or NAME-NNNNN-of-NNNNN)"
                )
            return paths
        return [p]
    paths = [as_path(p) for p in paths_or_dir]
    if not paths:
        raise ValueError("Shards received an empty list of shard paths")
    return paths


def remote_object(url: str) -> bool:
    """Whether `url` names an object (True) or a folder, a prefix of objects (False). Neither:
    `FileNotFoundError` naming it (a missing bucket: `storage.StorageError`)."""
    try:
        storage.info(url)
        return True
    except IsADirectoryError:
        return False
    except FileNotFoundError:
        if storage.scheme(url) in storage.WRITABLE:
            if storage.listing(url):
                return False
        elif storage.exists(storage.join(url, DATASET_FILE)):
            return False  # a web server's folder: known by its dataset.json
        else:
            raise FileNotFoundError(f"{storage.redact(url)}: no such object, nor a folder holding a {DATASET_FILE} "
                                    "(https:// folders cannot be listed: give each shard's URL)") from None
        raise FileNotFoundError(f"{storage.redact(url)}: no such object or folder") from None


def remote_shard_paths(url: str) -> list[str]:
    """The shards of a bucket folder (its objects named as shards, `is_shard_name`, not in
    subfolders; sorted by name), or ``[url]`` when `url` names one object. An https:// URL
    names one object (a web server's folders cannot be listed)."""
    url = url.rstrip("/") if not url.endswith("://") else url
    if remote_object(url):
        return [url]
    if storage.scheme(url) not in storage.WRITABLE:
        raise ValueError(f"{storage.redact(url)} is a folder: https:// folders cannot be listed; give each shard's "
                         "URL, or a folder holding a dataset.json")
    names = sorted(n for n in storage.listing(url) if "/" not in n and is_shard_name(n))
    if not names:
        raise ValueError(f"folder {storage.redact(url)} holds no shards (objects named *.tfrecord, *.tfrecords, "
                         "*.tfrec, each also .gz, or NAME-NNNNN-of-NNNNN)")
    return [storage.join(url, n) for n in names]


OPEN_THREADS = 16  # remote shards opened at once by Shards


class Shards:
    """Several shards presented as one indexed sequence of records.

    Global index ``i`` maps to ``(shard number, local index)`` through the
    cumulative record counts (`locate`).
    """

    def __init__(self, paths_or_dir, max_record_bytes=MAX_RECORD_BYTES, compression=None):
        self.paths = shard_paths(paths_or_dir)
        self.readers = []
        opening = []
        try:
            if len(self.paths) > 1 and any(storage.is_remote(p) for p in self.paths):
                # a remote shard's opening waits on a few requests (size, first bytes, side
                # files): OPEN_THREADS at once, the first error in shard order raised
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(min(OPEN_THREADS, len(self.paths))) as pool:
                    opening = [pool.submit(ShardReader, p, max_record_bytes, compression) for p in self.paths]
                for f in opening:
                    self.readers.append(f.result())
            else:
                for p in self.paths:
                    self.readers.append(ShardReader(p, max_record_bytes, compression))
        except BaseException:
            for f in opening:  # the readers opened beside the one that failed
                if f.done() and f.exception() is None and f.result() not in self.readers:
                    f.result().close()
            self.close()
            raise
        self.starts = np.concatenate([[0], np.cumsum([len(r) for r in self.readers])]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __repr__(self) -> str:
        return f"Shards({len(self.readers)} shards, records={len(self)})"

    def locate(self, i) -> tuple[int, int]:
        """(shard number, index within that shard) of global record `i`."""
        shard, local = self.locate_many([i])
        return int(shard[0]), int(local[0])

    def read(self, i) -> bytes:
        s, j = self.locate(i)
        return self.readers[s].read(j)

    def locate_many(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """(shard numbers, indices within those shards) of global records `indices` (ints,
        a range or an integer array; negative ones count from the end); see `record_indices`."""
        idx = record_indices(indices, len(self), f"{len(self)} records in {len(self.readers)} shards")
        shard = np.searchsorted(self.starts, idx, side="right") - 1
        return shard, idx - self.starts[shard]

    def read_many(self, indices, with_crc: bool = False):
        """Payloads of several global records in the order asked; see `read_records` (with
        `with_crc`, ``(payloads, crcs)``, as `ShardReader.read_many`)."""
        shard, local = self.locate_many(indices)
        return read_records(self.readers, shard, local, with_crc)

    def __iter__(self):
        for r in self.readers:
            yield from r

    def close(self) -> None:
        for r in self.readers:
            r.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
