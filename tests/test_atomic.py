"""The one atomic writer: the old file or the new one, never a part; a killed writer's temporary
files removed, a live writer's kept."""

import os
import stat

import numpy as np
import pytest

from layerkit._atomic import TEMP_NAME, atomic_save, atomic_write, open_temp, remove_stale_temps, temp_path


@pytest.mark.parametrize("content, expected", [
    (b"\x00bytes", b"\x00bytes"),
    ("text \u00e9", "text \u00e9".encode()),
    (lambda f: f.write(b"by a function"), b"by a function"),
])
def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path, content, expected):
    path = tmp_path / "f.json"
    path.write_bytes(b"old")
    atomic_write(path, content)
    assert path.read_bytes() == expected
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "a.npy"
    path.write_bytes(b"old")

    def fail(f):
        np.save(f, np.arange(3))
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        atomic_write(path, fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_temporary_names_are_unique_hidden_and_carry_the_pid(tmp_path):
    names = {temp_path(tmp_path / "epoch-0001.keras", ".keras").name for _ in range(50)}
    assert len(names) == 50
    for name in names:
        m = TEMP_NAME.match(name)
        assert m and m["name"] == "epoch-0001.keras" and int(m["pid"]) == os.getpid() and name.endswith(".keras")
    fd, tmp = open_temp(tmp_path / "x")
    os.close(fd)
    assert TEMP_NAME.match(tmp.name) and tmp.parent == tmp_path
    assert stat.S_IMODE(tmp.stat().st_mode) == 0o666 & ~_umask()  # as open() makes it, not mkstemp's 0o600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_remove_stale_temps_removes_a_dead_writers_files_and_keeps_a_live_ones(tmp_path, dead_pid):
    stale = [tmp_path / f".state.json.{dead_pid}-0123456789ab.tmp", tmp_path / f".e.keras.{dead_pid}-0123456789ab.tmp.keras"]
    live = [tmp_path / f".state.json.{os.getpid()}-0123456789ab.tmp", tmp_path / f".b.{os.getppid()}-abcdef012345.tmp"]
    others = [tmp_path / "x.tmp", tmp_path / ".hidden", tmp_path / f".y.{dead_pid}-short.tmp"]
    for p in stale + live + others:
        p.write_bytes(b"partial")
    assert sorted(remove_stale_temps(tmp_path)) == sorted(stale)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in live + others)
    assert remove_stale_temps(tmp_path / "missing") == []


def test_atomic_save_gives_the_writer_a_path_with_the_suffix_and_replaces_the_file(tmp_path):
    path = tmp_path / "model.keras"
    path.write_bytes(b"old")
    seen = []

    def save(tmp):
        seen.append(tmp)
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.keras.") and tmp.suffix == ".keras"
        assert path.read_bytes() == b"old"  # the old file stays until the new one is whole
        tmp.write_bytes(b"new")

    atomic_save(path, save, ".keras")
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["model.keras"]

    def fail(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_save(path, fail, ".keras")
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_atomic_save_of_a_hard_link_to_the_file_already_there_leaves_no_temporary(tmp_path):
    """Publishing a checkpoint that last.keras already links to: rename() between two links of
    one file does nothing, so the temporary is removed explicitly."""
    target, link = tmp_path / "epoch-1.keras", tmp_path / "last.keras"
    target.write_bytes(b"weights")
    os.link(target, link)
    atomic_save(link, lambda tmp: os.link(target, tmp))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-1.keras", "last.keras"]
    assert link.read_bytes() == b"weights"
