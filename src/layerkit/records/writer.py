"""`write_records`: any source (`layerkit.data.sources`) as TFRecord shards and a ``dataset.json``.

Every image is read from the source and decoded once (to check it and record its size); the
stored bytes are the source's own (a JPEG stays that JPEG). Records are shuffled with a seed and
split into shards whose sizes differ by at most one; each shard appears only when complete, and
``dataset.json`` is written last.
"""

import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np

from layerkit import storage
from layerkit._atomic import atomic_write, remove_stale_temps
from layerkit.data.decode import image_format
from layerkit.data.sources import open_source
from layerkit.records.dataset import DATASET_FILE, Progress
from layerkit.records.example import DEFAULT_KEYS, ImageKeys, encode_image_example
from layerkit.records.labels import labels_path, write_labels
from layerkit.records.tfrecord import (
    INDEX_SUFFIX,
    LABELS_SUFFIX,
    MAX_RECORD_BYTES,
    SIDE_FOLDER,
    ShardWriter,
    index_path,
    masked_crc32c,
    side_cache_dir,
)

FORMAT = "layerkit-records/1"
CHUNK = 256  # images prepared per batch of threads


def shard_name(name: str, k: int, n: int) -> str:
    return f"{name}-{k:05d}-of-{n:05d}.tfrecord"


def _check_labels(source, name) -> None:
    labels = np.asarray(source.labels)
    bad = np.flatnonzero((labels < 0) | (labels >= len(source.classes)))
    if bad.size:
        i = int(bad[0])
        where = source.describe(i) if hasattr(source, "describe") else f"{name} image {i}"
        raise ValueError(f"{where}: label {int(labels[i])} is out of range for {len(source.classes)} classes "
                         f"(expected 0..{len(source.classes) - 1}; {bad.size} such images)")


def _first_missing(path: Path):
    """The topmost folder of `path` (itself included) that does not exist yet, or None."""
    top = None
    for p in (path, *path.parents):
        if os.path.lexists(p):
            break
        top = p
    return top


def _clear_old(out: Path, overwrite: bool) -> None:
    """Refuse (or with `overwrite`, delete) the records a write left in `out`: its shards, their
    side files (in ``.layerkit/``, or beside them: the layout before) and dataset.json."""
    side = out / SIDE_FOLDER
    old = (sorted(out.glob("*.tfrecord")) + sorted(out.glob("*.tfrecord" + INDEX_SUFFIX))
           + sorted(out.glob("*.tfrecord" + LABELS_SUFFIX)) + sorted(side.glob("*.tfrecord" + INDEX_SUFFIX))
           + sorted(side.glob("*.tfrecord" + LABELS_SUFFIX)))
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
    on_bad_image: str = "error",
    shown: str | None = None,
) -> dict:
    """Write the images of `src` as `shards` TFRecord shards in `out_dir`; return the dataset.json dict.
    (`shown`: the name progress lines give the destination, `out_dir` by default.)

    `src` is a path `layerkit.data.sources.open_source` opens (a folder of class subfolders,
    an ``.npz`` pack, CIFAR-10 python batches, folder or ``.tar.gz``, TFRecord shards; `split`
    picks train or test where it holds both) or a source object with ``encoded_many``. Records are
    shuffled with `seed` and split into shards whose sizes differ by at most one.

    Every image is read and decoded once first (`layerkit.data.check`, as `layerkit train`
    checks them): with ``on_bad_image="error"`` any bad image raises one `BadImagesError` naming
    every bad image and why; with ``"skip"`` they are left out and listed in dataset.json's
    ``skipped``. A label out of range raises a `ValueError` naming the image. A refused or
    failed write leaves nothing: no shard, no dataset.json, and no `out_dir` if it made it.

    Temporary files that an earlier, killed writer left in `out_dir`
    (``.NAME.PID-RANDOM.tmp`` whose process no longer exists) are deleted first.

    `out_dir` may be a bucket folder (``gs://B/PREFIX``, ``s3://B/PREFIX``): `write_remote`.
    """
    if storage.is_remote(out_dir):
        return write_remote(src, str(out_dir), shards=shards, seed=seed, keys=keys, name=name, split=split,
                            overwrite=overwrite, threads=threads, progress=progress,
                            max_record_bytes=max_record_bytes, on_bad_image=on_bad_image)
    from layerkit.data.check import ON_BAD_IMAGE, BadImagesError, bad_images_message, check_images

    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise ValueError(f"shards must be a positive int, got {shards!r}")
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(f"on_bad_image must be one of {', '.join(ON_BAD_IMAGE)}. Received: {on_bad_image!r}")
    source = src if hasattr(src, "encoded_many") else open_source(src, split)
    source_name = getattr(source, "name", str(src))
    n = len(source)
    if n == 0:
        raise ValueError(f"{source_name}: no images to write")
    if shards > n:
        raise ValueError(f"shards={shards} exceeds the {n} images of {source_name}; use at most {n}")
    _check_labels(source, source_name)
    threads = threads or min(4, os.cpu_count() or 1)
    check = check_images(source, threads)  # every image read and decoded once; the stored bytes stay as they are
    if check.bad and on_bad_image == "error":
        raise BadImagesError(bad_images_message(check, n, source_name), check.bad)
    keep = check.good()
    if shards > len(keep):
        raise ValueError(f"shards={shards} exceeds the {len(keep)} usable images of {source_name} "
                         f"({len(check.bad)} skipped); use at most {len(keep)}")
    out = Path(out_dir)
    made = _first_missing(out.absolute())
    out.mkdir(parents=True, exist_ok=True)
    shard_list, counts, sizes = [], Counter(), Counter()
    bar = Progress(f"writing {shown or out}", len(keep), progress)
    try:
        remove_stale_temps(out)  # what a killed writer left (its pid is gone); see remove_stale_temps
        if (out / SIDE_FOLDER).is_dir():
            remove_stale_temps(out / SIDE_FOLDER)
        _clear_old(out, overwrite)
        order = keep[np.random.default_rng(seed).permutation(len(keep))]
        bounds = np.linspace(0, len(order), shards + 1).round().astype(int)  # sizes differ by at most one
        for k in range(shards):
            path = out / shard_name(name, k, shards)
            rows = []  # the shard's labels file: label, image start, image size, CRC
            with ShardWriter(path, max_record_bytes) as writer:
                part = order[bounds[k] : bounds[k + 1]]
                for lo in range(0, len(part), CHUNK):
                    idx = part[lo : lo + CHUNK]
                    for i, data in zip(idx, source.encoded_many(idx)):
                        label, (h, w) = int(source.labels[i]), (int(v) for v in check.sizes[i])
                        payload = encode_image_example(data, label, image_format(data), h, w, keys)
                        writer.write(payload)
                        rows.append((label, payload.find(data), len(data), masked_crc32c(payload)))
                        counts[label] += 1
                        sizes[f"{h}x{w}"] += 1
                    bar.update(bounds[k] + lo + len(idx))
            shard_list.append({"file": path.name, "records": len(part), "bytes": path.stat().st_size})
            write_labels(path, rows, writer.offsets, ours=True)  # layerkit's own folder: in .layerkit/
        info = {
            "format": FORMAT,
            "source": source_name,
            "classes": list(source.classes),
            "counts": {c: counts[i] for i, c in enumerate(source.classes)},
            "records": len(keep),
            "seed": seed,
            "image_sizes": dict(sizes.most_common()),
            "keys": asdict(keys),
            "shards": shard_list,
        }
        if check.bad:
            info["skipped"] = [{"image": where, "reason": why} for _, where, why in check.bad]
        atomic_write(out / DATASET_FILE, json.dumps(info, indent=2) + "\n")
    except BaseException:
        for s in shard_list:  # no partial data set: drop the shards this call finished
            for p in (out / s["file"], index_path(out / s["file"], True), labels_path(out / s["file"], True)):
                p.unlink(missing_ok=True)
        try:
            (out / SIDE_FOLDER).rmdir()  # if this call made it (empty)
        except OSError:
            pass
        if made is not None:  # and the folders it made, if nothing else went into them
            for p in [out.absolute(), *out.absolute().parents]:
                try:
                    p.rmdir()
                except OSError:
                    break
                if p == made:
                    break
        raise
    finally:
        bar.close()
    return info


def _is_records_object(name: str) -> bool:
    """An object a records write puts in its folder (what `_clear_old` replaces locally)."""
    return name == DATASET_FILE or name.endswith(".tfrecord") and "/" not in name or (
        name.startswith(SIDE_FOLDER + "/") and name.count("/") == 1
        and name.endswith((".tfrecord" + INDEX_SUFFIX, ".tfrecord" + LABELS_SUFFIX)))


def write_remote(src, url: str, overwrite: bool = False, **kwargs) -> dict:
    """`write_records` into the bucket folder `url`: the records are written into a private
    staging folder under the per-user cache, then uploaded, shards and side files first and
    ``dataset.json`` last (a folder without it is an unfinished write); the staging folder is
    removed either way. A prefix that already holds objects is refused, as a local folder
    holding records is; with `overwrite`, the records an earlier write left there (and nothing
    else) are replaced, its dataset.json deleted first."""
    url = url.rstrip("/")
    storage._writable(url)
    existing = sorted(storage.listing(url))
    if existing:
        theirs = [n for n in existing if not _is_records_object(n)]
        if theirs:
            raise ValueError(f"{storage.redact(url)} already holds {len(existing)} objects ({theirs[0]}, ...), not "
                             "all of them records layerkit wrote: write the records to an empty prefix")
        if not overwrite:
            raise ValueError(f"{storage.redact(url)} already holds records ({existing[0]}, ...); pass overwrite=True "
                             "(--overwrite) to replace them")
    root = side_cache_dir() / ".staging"  # inside the private per-user cache, wherever it was put
    root.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    root.mkdir(mode=0o700, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="records-", dir=root))
    uploaded = []
    try:
        info = write_records(src, staging / "out", shown=storage.redact(url), **kwargs)
        if existing:  # replaced: the old dataset.json goes first, so the folder is never "complete" half-old
            for n in sorted(existing, key=lambda n: n != DATASET_FILE):
                storage.delete(storage.join(url, n))
        local = staging / "out"
        files = [local / s["file"] for s in info["shards"]]
        files += sorted((local / SIDE_FOLDER).iterdir()) if (local / SIDE_FOLDER).is_dir() else []
        for f in files + [local / DATASET_FILE]:  # dataset.json last: it marks a complete folder
            target = storage.join(url, f.relative_to(local).as_posix())
            storage.upload(f, target)
            uploaded.append(target)
    except BaseException:
        for target in reversed(uploaded):  # no partial data set: drop what this call uploaded
            try:
                storage.delete(target)
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info
