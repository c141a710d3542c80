"""Object storage: the one layer through which layerkit reads and writes ``gs://``, ``s3://``
and (read-only) ``https://`` locations.

Local paths keep layerkit's own file code (positional reads, atomic renames, locks); a URL goes
through fsspec (gcsfs, s3fs, its HTTP file system: the optional extra ``layerkit[cloud]``,
imported on the first URL only; docs/dependencies.md says why fsspec). Credentials and
endpoints come from each cloud's standard environment, never from layerkit's files:
application default credentials or ``STORAGE_EMULATOR_HOST`` for ``gs://``; the AWS variables
and profiles, ``AWS_ENDPOINT_URL`` for an S3-compatible server, for ``s3://``.

Every failure is one line naming the URL (its query and user part redacted: `redact`):
`StorageError` (a ``ValueError``: the CLI exits 2) for a bucket that does not exist, no
permission, or a server that cannot be reached after `ATTEMPTS` tries; a missing object is
Python's ``FileNotFoundError``, an object a create-only write finds ``FileExistsError``.
"""

import functools
import os
import re
import time
import urllib.parse

SCHEMES = ("gs", "s3", "https", "http")
WRITABLE = ("gs", "s3")
ATTEMPTS = 3  # tries of an operation that failed on the network, 0.5 s then 1 s apart
CLOUD_EXTRA = "pip install 'layerkit[cloud]'"
_URL = re.compile(r"^(?P<scheme>[a-z0-9]+)://", re.I)


class StorageError(ValueError):
    """An object-storage location that cannot be used: named (redacted), with why."""


def scheme(path) -> str | None:
    """The URL scheme of `path` ("gs", "s3", "https", "http"), or None for a local path."""
    m = _URL.match(str(path)) if isinstance(path, str) else None
    if m is None:
        return None
    s = m["scheme"].lower()
    if s not in SCHEMES:
        raise StorageError(f"{redact(path)}: layerkit reads and writes local paths, gs://, s3:// and "
                           f"https:// URLs; {s}:// is not one of them")
    return s


def is_remote(path) -> bool:
    """Whether `path` is an object-storage URL (a str starting ``gs://``, ``s3://``, ``https://``)."""
    return scheme(path) is not None


def redact(url) -> str:
    """`url` without what may carry a secret: its user part and its query (a signed URL's token)."""
    text = str(url)
    if not _URL.match(text):
        return text
    parts = urllib.parse.urlsplit(text)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if "@" in parts.netloc:
        netloc = "***@" + netloc
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))


def join(url: str, *names) -> str:
    """`url` / `names`, with exactly one slash between the parts."""
    out = str(url).rstrip("/")
    for name in names:
        out += "/" + str(name).strip("/")
    return out


def parent(url: str) -> str:
    """The folder of `url` (everything before its last name)."""
    return str(url).rstrip("/").rsplit("/", 1)[0]


def name(url: str) -> str:
    """The last name of `url`."""
    return str(url).rstrip("/").rsplit("/", 1)[-1]


@functools.lru_cache(maxsize=None)
def _filesystem(kind: str):
    try:
        if kind == "s3":
            import s3fs

            # botocore reads AWS_ENDPOINT_URL, the AWS variables and profiles itself; its own
            # retries are kept short, layerkit's (`ATTEMPTS`) decide
            return s3fs.S3FileSystem(config_kwargs={"connect_timeout": 10, "read_timeout": 120,
                                                    "retries": {"max_attempts": 2, "mode": "standard"}},
                                     )
        if kind == "gs":
            # gcsfs's experimental layer asks a gRPC control plane for each bucket's layout
            # (hierarchical namespaces); layerkit needs plain objects only
            os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
            import gcsfs

            return gcsfs.GCSFileSystem(retries=1)  # STORAGE_EMULATOR_HOST and ADC: gcsfs reads them
        from fsspec.implementations.http import HTTPFileSystem

        return HTTPFileSystem()
    except ImportError as err:
        raise StorageError(f"{kind}:// locations need layerkit's cloud extra, which is not installed "
                           f"({err.name} is missing): {CLOUD_EXTRA}") from None


def filesystem(url: str):
    """The fsspec file system of `url` and the path it takes (``bucket/key``, or the URL for https)."""
    s = scheme(url)
    if s is None:
        raise StorageError(f"{url} is a local path, not an object-storage URL")
    fs = _filesystem("https" if s == "http" else s)
    return fs, (str(url) if s in ("http", "https") else str(url).split("://", 1)[1])


def _bucket(url: str) -> str:
    return str(url).split("://", 1)[1].split("/", 1)[0]


def _classify(url: str, err: BaseException, doing: str) -> BaseException | None:
    """The error to raise for `err` (None: a network failure worth another try)."""
    text = f"{type(err).__name__}: {err}"
    low = text.lower()
    shown = redact(url)
    if isinstance(err, (FileExistsError, IsADirectoryError, NotADirectoryError)):
        return err
    if "nosuchbucket" in low or "bucket does not exist" in low or "specified bucket does not exist" in low \
            or ("bucket" in low and "not found" in low):
        return StorageError(f"{shown}: the bucket {_bucket(url)} does not exist (or this account cannot see it)")
    if isinstance(err, FileNotFoundError):
        if not _bucket_exists(url):
            return StorageError(f"{shown}: the bucket {_bucket(url)} does not exist (or this account cannot see it)")
        return FileNotFoundError(f"{shown} does not exist")
    if isinstance(err, PermissionError) or any(w in low for w in ("accessdenied", "forbidden", "403", "401",
                                                                 "unauthorized", "invalidaccesskeyid",
                                                                 "signaturedoesnotmatch")):
        return StorageError(f"{shown}: no permission to {doing} it ({_short(text)}); credentials come from "
                            "the cloud's own environment (gcloud application default credentials, "
                            "AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
    if isinstance(err, (ConnectionError, TimeoutError, OSError)) or any(
            w in low for w in ("connect", "timeout", "timed out", "connection", "endpoint", "503", "500",
                               "slowdown", "serverdisconnected")):
        return None
    return StorageError(f"{shown}: could not {doing} it ({_short(text)})")


def _bucket_exists(url: str) -> bool:
    if scheme(url) not in WRITABLE:
        return True
    fs, _ = filesystem(url)
    try:
        fs.ls(_bucket(url), detail=False)
    except FileNotFoundError:
        return False
    except Exception:  # cannot tell: the object's own error stands
        return True
    return True


def _short(text: str) -> str:
    """A library's error text, one line, any URL's query (a signed URL's token) redacted."""
    text = re.sub(r"(?:\?|%3[Ff])[^\s\"'()<>]*", "?***", " ".join(str(text).split()))
    return text if len(text) <= 300 else text[:297] + "..."


def call(url: str, doing: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, an operation on `url`, with layerkit's errors and tries."""
    last = None
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(0.5 * attempt)
        try:
            return fn(*args, **kwargs)
        except StorageError:
            raise
        except Exception as err:  # fsspec back ends raise many kinds; each is worded here
            out = _classify(url, err, doing)
            if out is err:
                raise
            if out is not None:
                raise out from None
            last = err
    raise StorageError(f"{redact(url)}: could not {doing} it: the server did not answer after {ATTEMPTS} tries "
                       f"({_short(f'{type(last).__name__}: {last}')})") from None


def _writable(url: str) -> None:
    if scheme(url) not in WRITABLE:
        raise StorageError(f"{redact(url)}: https:// locations are read-only; write to gs://, s3:// or a local path")


def info(url: str) -> dict:
    """``{"size": bytes, "version": generation or ETag}`` of the object `url`."""
    fs, path = filesystem(url)
    got = call(url, "read", fs.info, path)
    if got.get("type") == "directory":
        raise IsADirectoryError(f"{redact(url)} is a folder (a prefix), not an object")
    version = got.get("generation") or got.get("ETag") or got.get("etag") or got.get("mtime") or ""
    return {"size": int(got.get("size") or 0), "version": str(version).strip('"')}


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return bool(call(url, "read", fs.exists, path))


def read(url: str, limit: int | None = None) -> bytes:
    """The bytes of object `url`; refused (`StorageError`) when it holds more than `limit`."""
    if limit is not None:
        size = info(url)["size"]
        if size > limit:
            raise StorageError(f"{redact(url)} holds {size} bytes, more than the {limit} expected")
    fs, path = filesystem(url)
    return bytes(call(url, "read", fs.cat_file, path))


def read_ranges(url, starts, ends) -> list:
    """The bytes ``[starts[k], ends[k])`` of object `url` (one URL, or one URL per range:
    several objects in one call), fetched concurrently."""
    starts, ends = [int(a) for a in starts], [int(b) for b in ends]
    if not starts:
        return []
    urls = [str(url)] * len(starts) if isinstance(url, (str, os.PathLike)) else [str(u) for u in url]
    if len(urls) != len(starts):
        raise ValueError(f"read_ranges: {len(urls)} URLs for {len(starts)} ranges")
    groups = {}  # one call per file system (all of a set's shards share one)
    for k, u in enumerate(urls):
        fs, path = filesystem(u)
        groups.setdefault(id(fs), (fs, []))[1].append((k, path))
    out = [None] * len(starts)
    for fs, members in groups.values():
        ks = [k for k, _ in members]
        got = call(urls[ks[0]], "read", fs.cat_ranges, [p for _, p in members], [starts[k] for k in ks],
                   [ends[k] for k in ks])
        for k, g in zip(ks, got):
            if isinstance(g, BaseException):
                err = _classify(urls[k], g, "read")
                raise (err or StorageError(f"{redact(urls[k])}: could not read bytes {starts[k]}-{ends[k]} "
                                           f"({_short(str(g))})")) from None
            if len(g) != ends[k] - starts[k]:
                raise StorageError(f"{redact(urls[k])}: asked for bytes {starts[k]}-{ends[k]}, got {len(g)} bytes "
                                   "(the object changed, or the server ignores ranges)")
            out[k] = bytes(g)
    return out


def write(url: str, data: bytes, create: bool = False) -> None:
    """Put `data` at `url` in one request (readers see the old object or the new one). With
    `create`, only if no object is there (If-None-Match / ifGenerationMatch=0): else
    ``FileExistsError``."""
    _writable(url)
    fs, path = filesystem(url)
    call(url, "write", fs.pipe_file, path, bytes(data), mode="create" if create else "overwrite")


def upload(local, url: str) -> None:
    """Copy the local file `local` to `url`."""
    _writable(url)
    fs, path = filesystem(url)
    call(url, "write", fs.put_file, str(local), path)


def download(url: str, local) -> None:
    """Copy the object `url` to the local path `local` (replacing it)."""
    fs, path = filesystem(url)
    call(url, "read", fs.get_file, path, str(local))


def copy(src: str, dst: str) -> None:
    """A copy of object `src` at `dst`, made by the server (same bucket)."""
    _writable(dst)
    fs, path = filesystem(src)
    call(dst, "write", fs.copy, path, filesystem(dst)[1])


def delete(url: str) -> None:
    """Remove object `url` (gone already: nothing to do)."""
    _writable(url)
    fs, path = filesystem(url)
    try:
        call(url, "delete", fs.rm_file, path)
    except FileNotFoundError:
        pass


def listing(url: str) -> dict:
    """Every object under the folder `url`: ``{relative name: size}`` (subfolders' as ``a/b``)."""
    fs, path = filesystem(url)
    prefix = path.rstrip("/") + "/"
    try:
        found = call(url, "list", fs.find, prefix, detail=True)
    except FileNotFoundError:
        return {}
    fs.invalidate_cache()
    return {k[len(prefix):]: int(v.get("size") or 0) for k, v in found.items()
            if k.startswith(prefix) and v.get("type") != "directory"}
