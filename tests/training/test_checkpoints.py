"""Failed checkpoint writes stop the run and say what was saved; one run per directory;
debris of a killed writer is cleaned; the manifest is checked before it is trusted."""

import errno
import json
import os
import shlex
import subprocess
import sys

import keras
import pytest

from layerkit.training import apply_overrides, get_recipe, train
from layerkit.training.checkpoints import CheckpointError, RunWriteError, StateError, read_state, repair
from layerkit.training.rundir import RunLock, RunLockedError

OVERRIDES = ["train_limit=64", "test_limit=32", "batch_size=32", "report=false", "warmup_epochs=1"]


def _config(epochs):
    return apply_overrides(get_recipe("sample", smoke_run=True), [f"epochs={epochs}", *OVERRIDES])


def test_full_disk_after_one_epoch_stops_and_says_epoch_1_is_saved(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_save = keras.Model.save

    def save(self, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(self, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", save)
    with pytest.raises(CheckpointError) as err:
        train(_config(3), tmp_path / "run", verbose=0)
    text = str(err.value)
    assert "epoch 2 was NOT saved" in text and "No space left" in text
    assert "last saved checkpoint is epoch 1" in text and "resume=True" in text  # from Python: Python's words
    assert "--resume" not in text and f"layerkit train --resume --out {tmp_path / 'run'}" in err.value.cli
    assert read_state(tmp_path / "run")["epochs_completed"] == 1
    assert not [p for p in (tmp_path / "run").rglob("*") if ".tmp" in p.name]

    monkeypatch.setattr(keras.Model, "save", real_save)  # room again: the run continues
    results = train(None, tmp_path / "run", resume=True, verbose=0)
    assert results["epochs"] == 3 and read_state(tmp_path / "run")["epochs_completed"] == 3


def test_a_write_that_fails_for_real_exits_non_zero_saying_nothing_was_saved(tmp_path):
    out = tmp_path / "run"
    # files of at most 1 MB (the checkpoint is larger); SIGXFSZ ignored: the write fails with EFBIG
    cmd = shlex.join([sys.executable, "-m", "layerkit.cli", "train", "--smoke", "--out", str(out),
                      "epochs=2", *OVERRIDES])
    proc = subprocess.run(["bash", "-c", f"ulimit -f 1000 && trap '' XFSZ && exec {cmd}"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "the checkpoint of epoch 1 was NOT saved" in proc.stderr
    assert "no epoch of this run has been saved" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert read_state(out) is None
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_a_second_run_into_a_locked_directory_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    with RunLock(out):
        proc = subprocess.run([sys.executable, "-m", "layerkit.cli", "train", "--smoke", "--out", str(out),
                               *OVERRIDES], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 2, proc.stderr[-3000:]
        assert "in use by another layerkit run" in proc.stderr and f"pid {os.getpid()}" in proc.stderr
        assert not (out / "config.json").exists()
    with RunLock(out), pytest.raises(RunLockedError, match=f"pid {os.getpid()} on host"):
        RunLock(out).acquire()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from layerkit.training.rundir import RunLock; "
                               f"RunLock({str(out)!r}).acquire(); print('locked', flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
        RunLock(out).acquire()
    holder.kill()
    holder.wait()
    lock = RunLock(out).acquire()  # the lock file is still there; its holder is not
    assert json.loads((out / ".lock").read_text())["pid"] == os.getpid()
    lock.release()


def test_repair_removes_debris_and_keeps_the_committed_checkpoint(tmp_path, dead_pid):
    out = tmp_path / "run"
    train(_config(1), out, verbose=0)
    state = read_state(out)
    debris = [out / f".state.json.{dead_pid}-0123456789ab.tmp",
              out / "checkpoints" / f".epoch-0002.keras.{dead_pid}-0123456789ab.tmp.keras",
              out / "checkpoints" / "epoch-0002.keras", out / f".last.keras.{dead_pid}-abcdef012345.tmp"]
    for p in debris:
        p.write_bytes(b"partial")
    (out / "last.keras").unlink()
    assert repair(out) == state
    assert not any(p.exists() for p in debris)
    assert (out / "last.keras").samefile(out / state["last"])


@pytest.mark.parametrize("text, message", [
    ("{not json", "unreadable"),
    ("[1, 2]", "not a layerkit checkpoint manifest"),
    (json.dumps({"epochs_completed": 1, "last": "last.keras", "seed_states": []}), "format"),
    (json.dumps({"format": 2, "epochs_completed": 1, "last": "checkpoints/epoch-0009.keras",
                 "seed_states": []}), "missing"),
])
def test_a_bad_manifest_is_refused_by_name(tmp_path, text, message):
    (tmp_path / "state.json").write_text(text)
    with pytest.raises(StateError, match=message):
        read_state(tmp_path)


def test_the_loser_of_a_race_for_a_new_folder_removes_nothing(tmp_path, monkeypatch):
    out = tmp_path / "run"  # does not exist when both starts look at it
    real_acquire = RunLock.acquire
    winner = []

    def acquire(self):  # the other start gets to the lock first: it makes the folder and writes there
        if not winner:
            winner.append(real_acquire(RunLock(self.workdir)))
            (self.workdir / "history.csv").write_text("epoch\n")
        return real_acquire(self)

    monkeypatch.setattr(RunLock, "acquire", acquire)
    with pytest.raises(RunLockedError):
        train(_config(1), out, verbose=0)
    assert (out / "history.csv").read_text() == "epoch\n"  # the winner's run is whole
    winner[0].release()


def test_every_write_of_a_run_fails_like_a_checkpoint_write(tmp_path, monkeypatch, capsys):
    from layerkit._atomic import atomic_write as real_write
    from layerkit.cli import main
    from layerkit.training import events, run

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    # the TensorBoard writer at start: exit 1, one line, nothing saved
    monkeypatch.setattr(events.EventWriter, "__init__", full)
    assert main(["train", "--smoke", "--out", str(tmp_path / "tb"), "epochs=1", *OVERRIDES]) == 1
    err = capsys.readouterr().err
    assert "the TensorBoard events could not be written (OSError: [Errno 28] No space left on device)" in err
    assert "no epoch of this run has been saved" in err and "Traceback" not in err
    monkeypatch.undo()

    # results.json at the end: the last epoch is kept, and --resume writes the record
    def no_results(path, *args, **kwargs):
        if str(path).endswith("results.json"):
            full()
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(run, "atomic_write", no_results)
    out = tmp_path / "run"
    with pytest.raises(RunWriteError) as failed:
        train(_config(1), out, verbose=0)
    assert "results.json could not be written" in str(failed.value)
    assert "the last saved checkpoint is epoch 1" in str(failed.value) and "resume=True" in str(failed.value)
    assert f"layerkit train --resume --out {out}" in failed.value.cli
    assert read_state(out)["epochs_completed"] == 1 and not (out / "results.json").exists()
    monkeypatch.undo()
    assert train(None, out, resume=True, verbose=0)["status"] == "done"
    assert json.loads((out / "results.json").read_text())["epochs"] == 1


def test_a_lock_whose_folder_its_holder_removed_is_taken_on_the_new_folder(tmp_path, monkeypatch):
    import shutil

    from layerkit.training import rundir

    out = tmp_path / "run"
    real_open, calls = os.open, []

    def open_then_removed(path, *args, **kwargs):  # the old holder removes the folder just after we open
        fd = real_open(path, *args, **kwargs)
        if not calls:
            calls.append(path)
            shutil.rmtree(out)
        return fd

    monkeypatch.setattr(rundir.os, "open", open_then_removed)
    lock = RunLock(out).acquire()
    assert len(calls) == 1 and (out / ".lock").is_file()  # locked the file that is at the path now
    with pytest.raises(RunLockedError):
        RunLock(out).acquire()
    lock.release()


def test_a_released_lock_leaves_no_file_and_a_starter_waiting_on_it_locks_a_new_one(tmp_path):
    import fcntl

    out = tmp_path / "run"
    lock = RunLock(out).acquire()
    waiting = os.open(out / ".lock", os.O_RDWR)  # a starter that opened the file before the release
    lock.release()
    assert not (out / ".lock").exists()  # a finished run leaves no empty .lock behind
    fcntl.flock(waiting, fcntl.LOCK_EX | fcntl.LOCK_NB)  # it gets the removed file's lock ...
    try:
        again = RunLock(out).acquire()  # ... which is not the lock: the file at the path is
        with pytest.raises(RunLockedError):
            RunLock(out).acquire()
        again.release()
    finally:
        os.close(waiting)
