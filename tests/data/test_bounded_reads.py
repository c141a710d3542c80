"""Sizes read before contents (issue 18 item 7): a sparse CIFAR-10 batch, an `.npz` zip bomb and a
GZIP shard bomb are each refused with a clear error, at bounded memory."""

import importlib.util
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from layerkit.data.cifar import CifarSource
from layerkit.data.npz import load_npz
from layerkit.data.sources import open_dataset
from layerkit.records.tfrecord import RecordError, ShardReader

BENCH = Path(__file__).parents[2] / "bench" / "bomb_memory.py"


def bombs():
    spec = importlib.util.spec_from_file_location("bomb_memory", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def traced_peak(fn):
    """(what `fn` raised, the peak of Python allocations while it ran)."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            fn()
        return info.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_sparse_cifar_batch_is_refused_by_its_size_unread(tmp_path):
    folder = bombs().make_cifar(tmp_path / "cifar-10-batches-py", 3.0)
    err, peak = traced_peak(lambda: CifarSource(folder, "train"))
    assert "data_batch_1 is 3,221,225,472 bytes, above the 67,108,864 a CIFAR-10 python batch can be" in str(err)
    assert peak < 16 << 20
    with pytest.raises(ValueError, match="above the 67,108,864"):
        open_dataset(str(folder))


def test_an_npz_zip_bomb_is_refused_by_its_declared_size_uninflated(tmp_path):
    pack = bombs().make_npz(tmp_path / "bomb.npz", 256)
    assert pack.stat().st_size < 2 << 20
    err, peak = traced_peak(lambda: load_npz(pack))
    assert "array 'jpeg' says it inflates to 268,435,584 bytes from" in str(err) and "zip bomb" in str(err)
    assert peak < 16 << 20


def test_an_npz_member_whose_header_disagrees_with_its_size_is_refused(tmp_path):
    import zipfile

    path = tmp_path / "lying.npz"
    np.savez(path, jpeg=np.zeros(10, np.uint8), offsets=np.array([0, 10]), labels=np.array([0]), classes=np.array(["a"]))
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members["jpeg.npy"] = members["jpeg.npy"].replace(b"(10,)", b"(10000000000,)")  # the header claims 10 GB
    with zipfile.ZipFile(path, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    err, peak = traced_peak(lambda: load_npz(path))
    assert "its header says uint8 of shape (10000000000,)" in str(err) and peak < 16 << 20


def test_a_gzip_shard_bomb_is_refused_by_a_streaming_count(tmp_path):
    shard = bombs().make_gzip(tmp_path / "bomb.tfrecord.gz", 128)
    err, peak = traced_peak(lambda: ShardReader(shard, max_decompressed_bytes=32 << 20))
    assert isinstance(err, RecordError) and "decompresses to more than 33554432 bytes" in str(err)
    assert peak < 8 << 20  # never the 32 MiB the limit allows, let alone the 128 MiB


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="peak RSS is read from Linux's /proc")
def test_each_bomb_peaks_far_below_300_mb_over_the_baseline_in_a_child_process():
    results = bombs().run(cifar_gib=3.0, npz_mib=256, gzip_mib=128, gzip_limit_mib=32)
    for name, r in results.items():
        assert r["outcome"] != "accepted", name
        assert r["peak_over_baseline_mib"] < 100, (name, r)
