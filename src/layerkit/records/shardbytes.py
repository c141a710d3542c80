"""A shard's bytes, local or in a bucket: the one place `ShardReader` gets them from.

`LocalBytes` reads a local file with ``os.pread`` on one descriptor (thread-safe, no shared
position). `RemoteBytes` reads a ``gs://``, ``s3://`` or ``https://`` object through
`layerkit.storage`, by ranged GETs. An object store answers a few hundred small requests a
second but sends megabytes in one, so remote reads never go one request per record:

- small reads (a header scan, a GZIP shard's stream, a footer) and, when the remote shards a
  reader holds fit the cache, the records of a batch are served from `BLOCK_BYTES`-aligned
  blocks kept in one per-process cache of at most ``$LAYERKIT_REMOTE_CACHE`` bytes (default
  1 GiB, least recently used first out); the blocks a whole batch misses, across shards, are
  fetched in ONE concurrent call (`fetch`), so a set that fits is fetched once per run;
- otherwise a batch's records are fetched exactly (neighbours already joined by the reader),
  again all in one concurrent call.

Each kind pickles as its location and reopens there (worker processes); a remote object
whose size or version (GCS generation, S3 ETag) changed since is refused by the reopening.
"""

import os
import re
import stat
import threading
from collections import OrderedDict

from layerkit import storage

BLOCK_BYTES = 8 << 20  # an aligned block of a remote shard: one ranged GET (8 MB: ~14 ms from moto)
REMOTE_CACHE_ENV = "LAYERKIT_REMOTE_CACHE"  # bytes of remote blocks one process keeps
REMOTE_CACHE_DEFAULT = 1 << 30
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?|b)?\s*$", re.I)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

_HAS_PREAD = hasattr(os, "pread")
_SEEK_LOCK = threading.Lock()


def _seek_read(fd, n, offset) -> bytes:
    """Where os.pread is missing (Windows): seek + read under a lock, still thread-safe."""
    with _SEEK_LOCK:
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, n)


def pread(fd, n, offset) -> bytes:
    """Up to `n` bytes at `offset` of the file open as `fd` (fewer only at its end)."""
    chunks, got = [], 0
    while got < n:  # pread may return fewer bytes than asked
        chunk = os.pread(fd, n - got, offset + got) if _HAS_PREAD else _seek_read(fd, n - got, offset + got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def remote_cache_bytes(environ=None) -> int:
    """``$LAYERKIT_REMOTE_CACHE`` in bytes (``512M``, ``2G``, ``1073741824``; 0 keeps no block
    beyond the batch being read), default 1 GiB."""
    environ = os.environ if environ is None else environ
    text = environ.get(REMOTE_CACHE_ENV, "")
    if not text:
        return REMOTE_CACHE_DEFAULT
    m = _SIZE.match(text)
    if m is None:
        raise ValueError(f"{REMOTE_CACHE_ENV} must be a size in bytes, e.g. 512M, 2G or 1073741824. "
                         f"Received: {REMOTE_CACHE_ENV}={text!r}")
    return int(m[1]) * _UNITS[(m[2] or "")[:1].lower()]


def open_bytes(path):
    """`RemoteBytes` for a URL, else `LocalBytes`."""
    return RemoteBytes(path) if storage.is_remote(path) else LocalBytes(path)


class LocalBytes:
    """A local regular file, open for positional reads. A FIFO, device or folder in its place is
    refused (`ValueError`: the caller words it) without blocking."""

    remote = False

    def __init__(self, path, expect_size=None):
        self.path = path
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0))
        try:
            st = os.fstat(self._fd)
            if not stat.S_ISREG(st.st_mode):
                raise NotARegularFile(path)
            self.size = st.st_size
            if expect_size is not None and self.size != expect_size:
                raise ChangedError(f"the shard changed size ({expect_size} -> {self.size} bytes) while it was read")
        except BaseException:
            self.close()
            raise

    def read(self, n, offset) -> bytes:
        return pread(self._fd, n, offset)

    peek = read

    def __reduce__(self):
        return type(self), (self.path, self.size)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class NotARegularFile(ValueError):
    """A local shard path that holds a folder, FIFO or device."""


class ChangedError(ValueError):
    """A shard that is no longer the one first opened (size or version)."""


class RemoteBytes:
    """An object in a bucket (or at an https:// URL): its `size` and `version` (generation,
    ETag) read once at opening; reads through the block cache (`read`) or `fetch`."""

    remote = True

    def __init__(self, url, expect=None):
        self.path = str(url)
        got = storage.info(self.path)
        self.size, self.version = got["size"], got["version"]
        if expect is not None and (self.size, self.version) != tuple(expect):
            raise ChangedError(f"the object changed (size {expect[0]} -> {self.size} bytes, version "
                               f"{expect[1]} -> {self.version}) since it was first opened")
        IDENTITY[self.path] = (self.size, self.version)

    @property
    def key(self):
        return (self.path, self.version)

    def read(self, n, offset) -> bytes:
        """Up to `n` bytes at `offset`, through the block cache."""
        end = min(offset + n, self.size)
        if end <= offset:
            return b""
        return bytes(fetch([(self, [offset], [end])], blocks=True)[0][0])

    def peek(self, n, offset) -> bytes:
        """Up to `n` bytes at `offset`: from a cached block, else by one exact ranged GET (a
        shard's first header at opening: no block fetched for it)."""
        end = min(offset + n, self.size)
        if end <= offset:
            return b""
        first, last = offset // BLOCK_BYTES, (end - 1) // BLOCK_BYTES
        if first == last and (block := CACHE.get((*self.key, first))) is not None:
            return block[offset - first * BLOCK_BYTES : end - first * BLOCK_BYTES]
        return fetch([(self, [offset], [end])], blocks=False)[0][0]

    def __reduce__(self):
        return type(self), (self.path, (self.size, self.version))

    def close(self) -> None:
        pass


IDENTITY = {}  # url -> (size, version) of the object as last opened: its side files' key


class BlockCache:
    """Blocks of remote objects, keyed by (url, version, block number), least recently used
    dropped first once they hold more than `limit` bytes."""

    def __init__(self):
        self._blocks = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.fetched = 0  # bytes fetched into the cache (a benchmark's figure)

    def limit(self) -> int:
        return remote_cache_bytes()

    def get(self, key):
        with self._lock:
            block = self._blocks.get(key)
            if block is not None:
                self._blocks.move_to_end(key)
            return block

    def put(self, key, block, limit) -> None:
        with self._lock:
            if key in self._blocks:
                return
            self._blocks[key] = block
            self._bytes += len(block)
            self.fetched += len(block)
            while self._bytes > limit and len(self._blocks) > 1:
                _, old = self._blocks.popitem(last=False)
                self._bytes -= len(old)

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._bytes = 0


CACHE = BlockCache()


def fetch(requests, blocks: bool) -> list:
    """The bytes ``[starts[k], ends[k])`` of each ``(source, starts, ends)`` in `requests`:
    one list of bytes per request. Local sources are read in place; every remote range
    missing from the block cache (with `blocks`: the aligned blocks it touches; without: the
    range itself) is fetched in one concurrent call across sources."""
    out = [None] * len(requests)
    remote = []
    for r, (source, starts, ends) in enumerate(requests):
        if source.remote:
            remote.append(r)
        else:
            out[r] = [source.read(int(b) - int(a), int(a)) for a, b in zip(starts, ends)]
    if not remote:
        return out
    if not blocks:
        urls, lo, hi, where = [], [], [], []
        for r in remote:
            source, starts, ends = requests[r]
            out[r] = [None] * len(starts)
            for k, (a, b) in enumerate(zip(starts, ends)):
                urls.append(source.path)
                lo.append(int(a))
                hi.append(min(int(b), source.size))
                where.append((r, k))
        for (r, k), data in zip(where, storage.read_ranges(urls, lo, hi)):
            out[r][k] = data
        return out
    limit = CACHE.limit()
    need, have = {}, {}  # (url, version, block) -> (source, block number)
    for r in remote:
        source, starts, ends = requests[r]
        for a, b in zip(starts, ends):
            for k in range(int(a) // BLOCK_BYTES, (max(int(b), int(a) + 1) - 1) // BLOCK_BYTES + 1):
                key = (*source.key, k)
                if key in have or key in need:
                    continue
                block = CACHE.get(key)
                if block is None:
                    need[key] = (source, k)
                else:
                    have[key] = block
    if need:
        keys = list(need)
        got = storage.read_ranges([need[key][0].path for key in keys],
                                  [need[key][1] * BLOCK_BYTES for key in keys],
                                  [min((need[key][1] + 1) * BLOCK_BYTES, need[key][0].size) for key in keys])
        for key, block in zip(keys, got):
            have[key] = block
            CACHE.put(key, block, limit)
    for r in remote:
        source, starts, ends = requests[r]
        out[r] = [_slice(have, source.key, int(a), min(int(b), source.size)) for a, b in zip(starts, ends)]
    return out


def _slice(blocks, key, a, b) -> bytes:
    """Bytes [a, b) of an object from its aligned `blocks`."""
    if b <= a:
        return b""
    first, last = a // BLOCK_BYTES, (b - 1) // BLOCK_BYTES
    if first == last:  # a view: read_records joins the batch's ranges into one buffer anyway
        block = blocks[(*key, first)]
        return memoryview(block)[a - first * BLOCK_BYTES : b - first * BLOCK_BYTES]
    parts = []
    for k in range(first, last + 1):
        block = blocks[(*key, k)]
        lo, hi = max(a - k * BLOCK_BYTES, 0), min(b - k * BLOCK_BYTES, len(block))
        parts.append(block[lo:hi])
    return b"".join(parts)
