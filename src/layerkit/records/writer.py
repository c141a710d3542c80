"""`write_records`: any source (`layerkit.data.sources`) as TFRecord shards and a ``dataset.json``.

Every image is read from the source and decoded once (to check it and record its size); the
stored bytes are the source's own (a JPEG stays that JPEG). Records are shuffled with a seed and
split into shards whose sizes differ by at most one; each shard appears only when complete, and
``dataset.json`` is written last.
"""

import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np

from layerkit.data.decode import decode_image, image_format
from layerkit.data.sources import open_source
from layerkit.records.dataset import DATASET_FILE, Progress
from layerkit.records.example import DEFAULT_KEYS, ImageKeys, encode_image_example
from layerkit.records.labels import labels_path, write_labels
from layerkit.records.tfrecord import (
    INDEX_SUFFIX,
    LABELS_SUFFIX,
    MAX_RECORD_BYTES,
    ShardWriter,
    _atomic_write,
    index_path,
    masked_crc32c,
    remove_stale_temps,
)

FORMAT = "layerkit-records/1"
CHUNK = 256  # images prepared per batch of threads


def shard_name(name: str, k: int, n: int) -> str:
    return f"{name}-{k:05d}-of-{n:05d}.tfrecord"


def _describe(source, i: int) -> str:
    describe = getattr(source, "describe", None)
    return describe(i) if describe is not None else f"image {i}"


def _prepare(source, i: int):
    """(encoded bytes, label, format, height, width) of source image i, checked."""
    label = int(source.labels[i])
    if not 0 <= label < len(source.classes):
        raise ValueError(
            f"{_describe(source, i)}: label {label} is out of range for {len(source.classes)} classes "
            f"(expected 0..{len(source.classes) - 1})"
        )
    try:
        data = source.encoded_many([i])[0]
    except ValueError as err:
        raise ValueError(f"{_describe(source, i)}: cannot read: {err}") from err
    try:
        pixels = decode_image(data)  # grayscale/CMYK convert here; the stored bytes stay as they are
    except ValueError as err:
        raise ValueError(f"{_describe(source, i)}: image does not decode: {err}") from err
    return data, label, image_format(data), pixels.shape[0], pixels.shape[1]


def _clear_old(out: Path, overwrite: bool) -> None:
    old = (sorted(out.glob("*.tfrecord")) + sorted(out.glob("*.tfrecord" + INDEX_SUFFIX))
           + sorted(out.glob("*.tfrecord" + LABELS_SUFFIX)))
    if (out / DATASET_FILE).exists():
        old.append(out / DATASET_FILE)
    if old and not overwrite:
        raise ValueError(f"{out} already holds records ({old[0].name}, ...); pass overwrite=True (--overwrite) to replace them")
    for p in old:
        p.unlink()


def write_records(
    src,
    out_dir,
    shards: int = 1,
    seed: int = 0,
    keys: ImageKeys = DEFAULT_KEYS,
    name: str = "records",
    split: str = "train",
    overwrite: bool = False,
    threads: int | None = None,
    progress: bool | None = None,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> dict:
    """Write the images of `src` as `shards` TFRecord shards in `out_dir`; return the dataset.json dict.

    `src` is a path `layerkit.data.sources.open_source` opens (a folder of class subfolders,
    an ``.npz`` pack, CIFAR-10 python batches, folder or ``.tar.gz``, TFRecord shards; `split`
    picks train or test where it holds both) or a source object with ``encoded_many``. Records are
    shuffled with `seed` and split into shards whose sizes differ by at most one.
    Every image must decode and every label lie in range, else a `ValueError`
    names the image.

    Temporary files that an earlier, killed writer left in `out_dir`
    (``.NAME.PID-RANDOM.tmp`` whose process no longer exists) are deleted first.
    """
    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise ValueError(f"shards must be a positive int, got {shards!r}")
    source = src if hasattr(src, "encoded_many") else open_source(src, split)
    source_name = getattr(source, "name", str(src))
    n = len(source)
    if n == 0:
        raise ValueError(f"{source_name}: no images to write")
    if shards > n:
        raise ValueError(f"shards={shards} exceeds the {n} images of {source_name}; use at most {n}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)  # what a killed writer left (its pid is gone); see remove_stale_temps
    _clear_old(out, overwrite)

    order = np.random.default_rng(seed).permutation(n)
    bounds = np.linspace(0, n, shards + 1).round().astype(int)  # balanced: sizes differ by at most one
    threads = threads or min(4, os.cpu_count() or 1)
    bar = Progress(f"writing {out}", n, progress)
    shard_list, counts, sizes = [], Counter(), Counter()
    try:
        with ThreadPoolExecutor(threads) as pool:
            for k in range(shards):
                path = out / shard_name(name, k, shards)
                rows = []  # the shard's labels file: label, image start, image size, CRC
                with ShardWriter(path, max_record_bytes) as writer:
                    part = order[bounds[k] : bounds[k + 1]]
                    for lo in range(0, len(part), CHUNK):
                        for data, label, fmt, h, w in pool.map(lambda i: _prepare(source, int(i)), part[lo : lo + CHUNK]):
                            payload = encode_image_example(data, label, fmt, h, w, keys)
                            writer.write(payload)
                            rows.append((label, payload.find(data), len(data), masked_crc32c(payload)))
                            counts[label] += 1
                            sizes[f"{h}x{w}"] += 1
                        bar.update(bounds[k] + lo + len(part[lo : lo + CHUNK]))
                shard_list.append({"file": path.name, "records": len(part), "bytes": path.stat().st_size})
                write_labels(path, rows, writer.offsets)
    except BaseException:
        for s in shard_list:  # no partial data set: drop the shards this call finished
            for p in (out / s["file"], index_path(out / s["file"]), labels_path(out / s["file"])):
                p.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
    info = {
        "format": FORMAT,
        "source": source_name,
        "classes": list(source.classes),
        "counts": {c: counts[i] for i, c in enumerate(source.classes)},
        "records": n,
        "seed": seed,
        "image_sizes": dict(sizes.most_common()),
        "keys": asdict(keys),
        "shards": shard_list,
    }
    _atomic_write(out / DATASET_FILE, lambda f: f.write(json.dumps(info, indent=2).encode() + b"\n"))
    return info
