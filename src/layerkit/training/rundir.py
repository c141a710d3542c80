"""The run directory as a resource: one writer at a time (files in it are replaced atomically
and a killed writer's debris removed by `layerkit._atomic`).

`RunLock` holds an exclusive `flock` on ``DIR/.lock`` for as long as a run writes there. The
kernel drops the lock when its process dies (SIGKILL included), so a lock file left by a
killed run is stale by construction and the next run takes it over; a live holder is named
(pid, host, start time, command) in the error. The lock file is deleted only by its holder
(a failed start removing the folder it made), and a starter that locked a file no longer at
the path tries again, so two starters never each hold a lock.

A fresh start claims a folder only when `claim_refusal` finds nothing against it: the folder
does not exist, is empty, or holds a run layerkit started (``MARKER``, written first under the
lock) that never completed an epoch. Anything else is refused and left untouched.

Errors are worded for whoever called: `RunError.worded(compose)` words the message for Python
(``resume=True``, ``workdir``) and keeps the CLI's (``--resume``, ``--out``) in ``.cli``.
"""

import datetime
import errno
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

LOCK_NAME = ".lock"
MARKER = ".layerkit-run"  # written by a fresh start right after it takes the lock


class Wording:
    """How an error tells the user to do something: as the CLI's flags or as Python's arguments."""

    def __init__(self, cli: bool):
        self.cli = cli
        self.out = "another --out" if cli else "another workdir"

    def resume(self, workdir, epochs=None) -> str:
        if self.cli:
            return f"`layerkit train --resume --out {workdir}" + (f" --epochs {epochs}`" if epochs else "`")
        return (f"`layerkit.train(None, {str(workdir)!r}, resume=True"
                + (f", epochs={epochs})`" if epochs else ")`"))

    @property
    def resume_flag(self) -> str:
        return "--resume" if self.cli else "resume=True"


PYTHON, CLI = Wording(cli=False), Wording(cli=True)


class Worded:
    """An error whose message is worded for Python; ``.cli`` holds the CLI's wording."""

    cli: str

    @classmethod
    def worded(cls, compose):
        """`compose(wording) -> str`, called once for Python (the message) and once for the CLI."""
        err = cls(compose(PYTHON))
        err.cli = compose(CLI)
        return err


class RunError(Worded, ValueError):
    """A run directory that cannot be used as asked (holds other files or a run, or nothing to resume)."""


class RunLockedError(ValueError):
    """Another live process is writing the run directory."""


def claim_refusal(workdir) -> "RunError | None":
    """Why a fresh start may not claim `workdir`, or None: it does not exist, is empty (a
    ``.lock`` aside), or holds a run layerkit started (``MARKER``) that never saved an epoch."""
    workdir = Path(workdir)
    if not workdir.exists() and not workdir.is_symlink():
        return None
    if not workdir.is_dir():
        kind = "a file" if workdir.is_file() else "not a folder"
        return RunError.worded(lambda w: f"{workdir} is {kind}; a run needs a folder: choose {w.out}")
    try:
        entries = sorted(os.listdir(workdir))
    except OSError as err:
        return RunError.worded(lambda w: f"{workdir} cannot be read ({err}); choose {w.out}")
    names = [e for e in entries if e != LOCK_NAME]
    if not names:
        return None
    if "state.json" in names:
        return RunError.worded(lambda w: f"{workdir} already holds a run with saved epochs (state.json): pass "
                                         f"{w.resume_flag} to continue it, or choose {w.out}")
    if MARKER in names:
        return None
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return RunError.worded(lambda w: f"{workdir} is not empty ({shown}) and holds no layerkit start to redo; "
                                     f"a new run starts only in a new or empty folder: choose {w.out} (nothing "
                                     "was changed)")


class RunLock:
    """An exclusive lock on a run directory, held from `acquire()` to `release()`."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.path = self.workdir / LOCK_NAME
        self._fd = None

    def acquire(self) -> "RunLock":
        for _ in range(5):  # a holder that removed the folder it made: lock the new one
            self.workdir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                    raise
                raise RunLockedError(f"{self.workdir} is in use by another layerkit run "
                                     f"({self.holder()}); wait for it to end, stop it, or choose "
                                     "another --out") from None
            if _same_file(fd, self.path):
                break
            os.close(fd)
        else:
            raise RunLockedError(f"{self.workdir} was removed by other layerkit runs five times while "
                                 "this one took its lock; try again")
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.datetime.now().isoformat(timespec="seconds"),
                  "command": " ".join(map(_redact, sys.argv))[:500]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd
        return self

    def holder(self) -> str:
        """Who holds the lock, as the lock file says."""
        try:
            with open(self.path, "rb") as f:
                info = json.loads(f.read(4096) or b"{}")
            return (f"pid {info.get('pid')} on host {info.get('host')}, started {info.get('started')}: "
                    f"{info.get('command', '?')}")
        except (OSError, ValueError):
            return "holder unknown: the lock file is unreadable"

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file, while still holding it, then unlock: a run leaves no ``.lock``.
        Safe against a starter waiting on the removed file: `acquire` takes a lock only on the
        file still at the path, and otherwise locks the new one."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            if _same_file(self._fd, self.path):
                try:
                    os.unlink(self.path)
                except OSError:  # a read-only folder: the empty file stays, unlocked
                    pass
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _redact(arg: str) -> str:
    from layerkit.storage import redact

    return redact(arg)


def _same_file(fd, path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
