"""Runs in a bucket: ``layerkit train --out gs://…/run`` (or ``s3://``), and ``--resume`` of such a
run on any machine.

The run is written as on a local disk, into a staging folder of this launch (under
``$LAYERKIT_RUNS_CACHE``, else ``$XDG_CACHE_HOME/layerkit/runs``), and `RemoteRun` copies it to
the bucket where the local run commits. Object stores have no rename, so the commit rule is
kept with what they have: each checkpoint file is a new, never rewritten object
(``checkpoints/epoch-NNNN.keras``, ``step-GGGGGGGG.keras``), uploaded with the run's other
files first; the manifest ``state.json`` is uploaded last, in one PUT, and that PUT is the
commit: a reader (``--resume`` on another machine) sees the old manifest and its files or the
new one and its files. ``last.keras`` and ``best.keras`` are then server-side copies of the
manifest's files, and checkpoint objects no manifest names are deleted, as locally.

The lock is a lease (`LeaseLock`): objects ``.lock/NNNNNNNN`` written only by conditional
creates (If-None-Match on S3, ifGenerationMatch=0 on GCS), so of two writers of one number
exactly one succeeds. The holder writes the next number every third of the lease
(``LAYERKIT_RUN_LEASE`` seconds, default 30). A starter that finds a lease waits: a renewal
means the holder is alive and the start is refused naming it; no renewal for a whole lease
means it died (a preempted VM, SIGKILL) and the starter takes the next number. A holder that
finds its next number taken has lost the lock and commits nothing more. Clocks of different
machines are never compared.
"""

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from layerkit import storage
from layerkit._atomic import TEMP_NAME
from layerkit.training.checkpoints import (CHECKPOINT_DIR, CHECKPOINT_NAME, KEPT, PUBLISHED, STATE_NAME,
                                           CheckpointError, fault_point, publish)
from layerkit.training.rundir import LOCK_NAME, MARKER, RunError, RunLockedError

LEASE_ENV = "LAYERKIT_RUN_LEASE"
RUNS_CACHE_ENV = "LAYERKIT_RUNS_CACHE"
LOCK_PREFIX = ".lock"
DEFAULT_LEASE = 30.0


def lease_seconds() -> float:
    raw = os.environ.get(LEASE_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_LEASE
    except ValueError:
        value = -1
    if not value > 0:
        raise ValueError(f"{LEASE_ENV}={raw!r}: expected a number of seconds above 0 (default {DEFAULT_LEASE:g})")
    return value


def runs_cache_dir() -> Path:
    folder = os.environ.get(RUNS_CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "layerkit", "runs")
    return Path(folder)


class LeaseLock:
    """The run lock of a bucket run (see the module docstring): `acquire`, `check`, `release`."""

    def __init__(self, url: str, lease: float | None = None, say=None):
        self.url = url
        self.prefix = storage.join(url, LOCK_PREFIX)
        self.lease = lease_seconds() if lease is None else lease
        self.number = None
        self.lost = None  # why the lock was lost, once it was
        self._stop = threading.Event()
        self._thread = None
        self._say = say or (lambda text: print(f"layerkit: {text}", file=sys.stderr, flush=True))
        self.holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(map(storage.redact, sys.argv))[:500]}

    def _numbers(self) -> list:
        return sorted(int(k) for k in storage.listing(self.prefix) if k.isdigit())

    def _read(self, n: int) -> dict:
        try:
            return json.loads(storage.read(self._name(n), limit=1 << 16))
        except (FileNotFoundError, ValueError):
            return {}

    def _name(self, n: int) -> str:
        return storage.join(self.prefix, f"{n:08d}")

    def _create(self, n: int, **extra) -> bool:
        body = {**self.holder, "lease_seconds": self.lease, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
        try:
            storage.write(self._name(n), json.dumps(body).encode(), create=True)
        except FileExistsError:
            return False
        return True

    @staticmethod
    def describe(info: dict) -> str:
        return (f"pid {info.get('pid')} on host {info.get('host')}, lease written {info.get('written')}: "
                f"{info.get('command', '?')}")

    def acquire(self) -> "LeaseLock":
        seen = None  # (number, when first seen) of a lease held by another writer
        while True:
            numbers = self._numbers()
            n = numbers[-1] if numbers else 0
            info = self._read(n) if numbers else {"released": True}
            if info.get("released"):
                if self._create(n + 1):
                    self.number = n + 1
                    break
                continue  # another starter took n + 1 at the same moment: look again
            now = time.monotonic()
            if seen is None:
                seen = (n, now)
                self._say(f"{storage.redact(self.url)} holds the lease of a run ({self.describe(info)}); waiting up "
                          f"to {self.lease:g} s for it to be renewed (a live run) or to lapse (a run that died)")
            elif n != seen[0]:
                raise RunLockedError(f"{storage.redact(self.url)} is in use by another layerkit run "
                                     f"({self.describe(info)}: it renewed its lease); wait for it to end, stop it, "
                                     "or choose another --out")
            elif now - seen[1] > self.lease:
                if self._create(n + 1, took_over=self.describe(info)):
                    self.number = n + 1
                    self._say(f"the lease of {storage.redact(self.url)} lapsed ({self.describe(info)}); "
                              "this run holds it now")
                    break
                continue
            time.sleep(min(1.0, self.lease / 6))
        self._thread = threading.Thread(target=self._renew, name="layerkit-lease", daemon=True)
        self._thread.start()
        self._prune()
        return self

    def _renew(self) -> None:
        while not self._stop.wait(self.lease / 3) and self.renew():
            pass

    def renew(self) -> bool:
        """Write the next lease number; False once the lock is lost (another run took it)."""
        try:
            if self._create(self.number + 1):
                self.number += 1
                self._prune()
                return True
        except (storage.StorageError, OSError):
            return True  # a network failure: the next renewal tries again; a lapse is found by `check`
        self.lost = f"another run took the lease ({self.describe(self._read(self.number + 1))})"
        return False

    def _prune(self) -> None:
        for k in self._numbers():
            if k < self.number - 1:
                storage.delete(self._name(k))

    def check(self) -> None:
        """Raise `RunLockedError` when this run no longer holds the lock."""
        if self.lost:
            raise RunLockedError(f"{storage.redact(self.url)}: this run lost its lock: {self.lost}; it commits "
                                 "nothing more")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.number is not None and not self.lost:
            if self._create(self.number + 1, released=True):
                self.number += 1
                self._prune()
        self.number = None


def claim_refusal(url: str, listing: dict) -> "RunError | None":
    """Why a fresh start may not claim the bucket folder `url` (its objects: `listing`), or None."""
    names = sorted(k for k in listing if not k.startswith(LOCK_PREFIX + "/"))
    shown = storage.redact(url)
    if not names or MARKER in names and STATE_NAME not in names:
        return None
    if STATE_NAME in names:
        return RunError.worded(lambda w: f"{shown} already holds a run with saved epochs (state.json): pass "
                                         f"{w.resume_flag} to continue it, or choose {w.out}")
    listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return RunError.worded(lambda w: f"{shown} is not empty ({listed}) and holds no layerkit start to redo; a new "
                                     f"run starts only in a new or empty folder: choose {w.out} (nothing was changed)")


class RemoteRun:
    """A run whose folder is the bucket URL `url`, written through the local folder `local`."""

    def __init__(self, url: str, resume: bool, chief: bool = True):
        self.url = url.rstrip("/")
        self.resume, self.chief = resume, chief
        self.lock = LeaseLock(self.url) if chief else None
        self.local = None
        self.committed = False  # whether this launch committed a manifest to the bucket
        self._sent = {}  # relative name -> (size, mtime_ns) of what the bucket holds from this launch
        self._checkpoints = set()  # checkpoint objects in the bucket (a killed launch's uncommitted ones too)
        self._remote_published = {}

    def __enter__(self) -> "RemoteRun":
        listing = storage.listing(self.url)
        if self.resume and "config.json" not in listing:
            raise RunError.worded(lambda w: f"{storage.redact(self.url)} holds no run to resume (no config.json); "
                                            f"start one without {w.resume_flag}")
        if not self.resume and self.chief and (refusal := claim_refusal(self.url, listing)):
            raise refusal
        cache = runs_cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        self.local = Path(tempfile.mkdtemp(prefix="run-", dir=cache))
        try:
            if self.lock:
                self.lock.acquire()
                listing = storage.listing(self.url)  # again, under the lock
                if not self.resume and (refusal := claim_refusal(self.url, listing)):
                    raise refusal
            if self.resume:
                self._download(listing)
            # a start that never completed an epoch (its MARKER) is redone over its objects, as a
            # local one is over its files: nothing else in the folder is deleted
        except BaseException:
            self._close(ok=False)
            raise
        return self

    def _download(self, listing: dict) -> None:
        state = json.loads(storage.read(storage.join(self.url, STATE_NAME), limit=1 << 24)) \
            if STATE_NAME in listing else {}
        named = {state[w] for w in KEPT if state.get(w)}
        for name in listing:
            if name.startswith(LOCK_PREFIX + "/") or name in PUBLISHED.values() or name == LOCK_NAME:
                continue
            if name.startswith(CHECKPOINT_DIR + "/"):
                self._checkpoints.add(name)
                if name not in named:
                    continue  # written by a commit that did not happen, or pruned late: deleted at the next
            target = self.local / name
            target.parent.mkdir(parents=True, exist_ok=True)
            storage.download(storage.join(self.url, name), target)
            if not name.startswith(CHECKPOINT_DIR + "/"):
                st = target.stat()
                self._sent[name] = (st.st_size, st.st_mtime_ns)
        self._sent.update({n: None for n in named})
        self._remote_published = {which: state.get(which) for which in PUBLISHED}

    def _files(self):
        """Relative names of the local run's files the bucket copy is made of, but for the
        checkpoints, the manifest and the published copies."""
        for path in sorted(self.local.rglob("*")):
            rel = path.relative_to(self.local).as_posix()
            if not path.is_file() or TEMP_NAME.match(path.name) or rel in (STATE_NAME, LOCK_NAME) \
                    or rel in PUBLISHED.values() or rel.startswith(CHECKPOINT_DIR + "/"):
                continue
            yield rel, path

    def _send_changed(self) -> None:
        for rel, path in self._files():
            st = path.stat()
            key = (st.st_size, st.st_mtime_ns)
            if self._sent.get(rel) != key:
                storage.upload(path, storage.join(self.url, rel))
                self._sent[rel] = key

    def commit(self, state: dict, where, what: str) -> None:
        """Copy the commit just made locally (`state`: its manifest) to the bucket: new
        checkpoint files and changed files first, the manifest last."""
        try:
            self.lock.check()
            for which in KEPT:
                name = state.get(which)
                if name and name not in self._sent:
                    storage.upload(self.local / name, storage.join(self.url, name))
                    self._sent[name] = None
                    self._checkpoints.add(name)
            self._send_changed()
            fault_point("uploaded", where)
            self.lock.check()
            storage.write(storage.join(self.url, STATE_NAME), json.dumps(state, indent=1).encode())
            self.committed = True
            fault_point("remote-committed", where)
            self._publish(state)
        except (storage.StorageError, OSError) as err:
            raise CheckpointError(f"{storage.redact(self.url)}: the checkpoint of {what} was saved locally but "
                                  f"could not be copied to the bucket ({err}); the bucket's run stays at its last "
                                  f"commit: continue it with `layerkit train --resume --out {storage.redact(self.url)}` "
                                  "once the cause is fixed. Training stopped.") from err

    def _publish(self, state: dict) -> None:
        for which, published in PUBLISHED.items():
            name = state.get(which)
            if name and self._remote_published.get(which) != name:
                storage.copy(storage.join(self.url, name), storage.join(self.url, published))
                self._remote_published[which] = name
        named = {state[w] for w in KEPT if state.get(w)}
        for name in sorted(self._checkpoints - named):
            if CHECKPOINT_NAME.fullmatch(name.split("/", 1)[1]):  # another name in checkpoints/ is not layerkit's
                storage.delete(storage.join(self.url, name))
                self._checkpoints.discard(name)
                self._sent.pop(name, None)

    def sync(self) -> None:
        """Copy what the run wrote since its last commit (results, report, plots, history)."""
        if self.chief and self.local is not None and self.lock and self.lock.number is not None:
            self.lock.check()
            self._send_changed()

    def _close(self, ok: bool) -> None:
        try:
            if self.lock:
                self.lock.release()
        finally:
            if self.local is not None:
                shutil.rmtree(self.local, ignore_errors=True)

    def __exit__(self, exc_type, exc, tb):
        from layerkit.training.stop import DivergedError

        try:
            if self.chief:
                if not self.committed and not self.resume and exc_type is not None \
                        and not issubclass(exc_type, (KeyboardInterrupt, DivergedError)):
                    self._remove_failed_start()
                elif exc_type is None:
                    self.sync()
                else:  # the run's own error is the one to see; what is not copied is said
                    try:
                        self.sync()
                    except (storage.StorageError, OSError, RunLockedError) as err:
                        print(f"layerkit: could not copy the run's last files to {storage.redact(self.url)}: {err}",
                              file=sys.stderr)
        finally:
            self._close(exc_type is None)

    def _remove_failed_start(self) -> None:
        """A fresh start that failed before its first commit: the objects this launch uploaded go
        (and only those: anything else under the URL is not layerkit's to delete)."""
        if STATE_NAME in storage.listing(self.url):
            return
        for name in sorted(self._sent):
            storage.delete(storage.join(self.url, name))
        print(f"layerkit: the start failed before any epoch was saved; removed what it wrote to "
              f"{storage.redact(self.url)}", file=sys.stderr)

    def shown(self, text: str) -> str:
        """`text` with the staging folder's path replaced by the bucket URL."""
        return text.replace(str(self.local), storage.redact(self.url)) if self.local else text


RUN_FILES = ("config.json", "classes.json", STATE_NAME, "results.json", "run.json")


@contextlib.contextmanager
def local_copy(run_dir):
    """The run `run_dir` as a local folder: itself when it is local; for a bucket URL, a
    temporary copy of its record files and of the checkpoints its manifest names (removed after)."""
    if not storage.is_remote(run_dir):
        yield Path(run_dir)
        return
    url = str(run_dir).rstrip("/")
    listing = storage.listing(url)
    if "config.json" not in listing:
        raise RunError(f"{storage.redact(url)} is not a layerkit run directory (no config.json)")
    cache = runs_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    local = Path(tempfile.mkdtemp(prefix="copy-", dir=cache))
    try:
        for name in RUN_FILES:
            if name in listing:
                storage.download(storage.join(url, name), local / name)
        state = json.loads((local / STATE_NAME).read_text()) if (local / STATE_NAME).exists() else {}
        for which in KEPT:  # what `read_state` checks is there
            name = state.get(which)
            if name and not (local / name).exists():
                (local / name).parent.mkdir(parents=True, exist_ok=True)
                storage.download(storage.join(url, name), local / name)
        if state:
            publish(local, state)  # best.keras and last.keras, as the bucket's copies are
        try:
            yield local
        except Exception as err:
            if str(local) in str(err):
                err.args = (str(err).replace(str(local), storage.redact(url)), *err.args[1:])
            raise
    finally:
        shutil.rmtree(local, ignore_errors=True)


def upload_tree(local, url: str) -> None:
    """Copy the local file or folder `local` to `url` (a folder's files under it)."""
    local = Path(local)
    if local.is_dir():
        for path in sorted(local.rglob("*")):
            if path.is_file():
                storage.upload(path, storage.join(url, path.relative_to(local).as_posix()))
    else:
        storage.upload(local, url)
