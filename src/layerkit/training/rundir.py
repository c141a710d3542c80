"""The run directory as a resource: one writer at a time (files in it are replaced atomically
and a killed writer's debris removed by `layerkit._atomic`).

`RunLock` holds an exclusive `flock` on ``DIR/.lock`` for as long as a run writes there. The
kernel drops the lock when its process dies (SIGKILL included), so a lock file left by a
killed run is stale by construction and the next run takes it over; a live holder is named
(pid, host, start time, command) in the error. The lock file is never deleted, so two
starters cannot each lock a different inode.
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


class RunLockedError(ValueError):
    """Another live process is writing the run directory."""


class RunLock:
    """An exclusive lock on a run directory, held from `acquire()` to `release()`."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.path = self.workdir / LOCK_NAME
        self._fd = None

    def acquire(self) -> "RunLock":
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
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.datetime.now().isoformat(timespec="seconds"),
                  "command": " ".join(sys.argv)[:500]}
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

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
