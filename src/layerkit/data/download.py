"""Explicit downloads: only when the user asks (`layerkit data download NAME`).

Nothing else in layerkit touches the network. A download is checked against its
published SHA-256 before use, then converted to TFRecord shards where
`open_dataset(NAME)` finds them (``DATA_DIR/NAME/{train,test}/``).
"""

import hashlib
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from layerkit._atomic import atomic_write
from layerkit.records import write_records


@dataclass(frozen=True)
class Remote:
    url: str
    sha256: str
    filename: str
    shards: dict  # split -> shard count


REMOTES = {
    # The official CIFAR-10 python batches (the checksum Keras's own loader uses).
    "cifar10": Remote(
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
        "cifar-10-python.tar.gz",
        {"train": 8, "test": 2},
    ),
}

CHUNK = 1 << 20


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: Path, sha256: str, timeout: float = 60.0) -> Path:
    """Download `url` to `dest` (atomically) and check its SHA-256; reuse a valid `dest`."""
    if dest.exists() and sha256_of(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)

    def copy_checked(out):
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            for block in iter(lambda: response.read(CHUNK), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != sha256:
            raise ValueError(f"{url}: SHA-256 mismatch: expected {sha256}, received {digest.hexdigest()}; "
                             "file discarded")

    try:
        atomic_write(dest, copy_checked)
        return dest
    except (urllib.error.URLError, OSError) as err:
        raise ConnectionError(
            f"Could not download {url} ({type(err).__name__}: {err}). Without a network, copy the "
            f"file to {dest} yourself (SHA-256 {sha256}) and run the command again."
        ) from err


def download(name: str, data_dir, remote: Remote | None = None) -> Path:
    """Fetch data set `name` and write its shards under ``data_dir/name``; return that folder."""
    if remote is None:
        if name not in REMOTES:
            raise ValueError(f"No download is known for {name!r}. Downloadable: {', '.join(REMOTES)}")
        remote = REMOTES[name]
    root = Path(data_dir) / name
    archive = fetch(remote.url, root / remote.filename, remote.sha256)
    for split, shards in remote.shards.items():
        print(f"writing {name} {split} shards to {root / split}", file=sys.stderr)
        write_records(archive, root / split, shards=shards, split=split, name=name, overwrite=True)
    return root
