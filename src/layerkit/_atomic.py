"""Files replaced atomically, and the temporary files of a killed writer removed.

Every file layerkit writes in place of another (a shard, its index and labels file,
``dataset.json``, a run's ``config.json``, ``state.json``, checkpoints, ...) is first written to a
hidden sibling named ``.NAME.PID-RANDOM.tmp`` (plus a suffix where the writer needs one, e.g.
``.keras``), fsynced, renamed over ``NAME``, and the folder fsynced: a reader, or a crash, sees
the old file or the new one, never part of one. The writer's pid in the name lets
`remove_stale_temps` delete what a killed writer left while a live writer keeps its files.
"""

import os
import re
import secrets
from pathlib import Path

TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{12}\.tmp(?:\.[A-Za-z0-9]+)?$")


def temp_path(path, suffix: str = "") -> Path:
    """A fresh name ``.NAME.PID-RANDOM.tmp{suffix}`` beside `path`, not created: for a writer
    that creates the file itself (a hard link, Keras's ``model.save``). `open_temp` creates one."""
    path = Path(path)
    return path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(6)}.tmp{suffix}"


def open_temp(path) -> tuple[int, Path]:
    """Create a new temporary file beside `path` (named as `temp_path` names it; mode 0o666 less
    the umask, as a plain ``open`` gives, unlike mkstemp's 0o600); return its descriptor and path."""
    for _ in range(100):
        tmp = temp_path(path)
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file beside {path}")


def fsync_dir(path) -> None:
    """Make a rename or unlink in folder `path` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, content) -> None:
    """Replace `path` with `content` so that a reader (or a crash) sees the old file or the new one.

    `content` is bytes, a str (written as UTF-8), or a function that writes to the binary file
    it is given (``lambda f: np.save(f, array)``). On any failure the temporary file is removed
    and `path` is left as it was.
    """
    path = Path(path)
    fd, tmp = open_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)



def atomic_save(path, save, suffix: str = "") -> None:
    """`atomic_write` for a writer that wants a path (Keras's ``model.save``): ``save(tmp)`` writes
    a temporary file named `suffix` at the end (``.keras``: Keras saves only to such names), which
    then replaces `path`; on any failure it is removed and `path` is left as it was."""
    path = Path(path)
    tmp = temp_path(path, suffix)
    try:
        save(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:  # a rename onto a hard link of the same file does nothing, and leaves tmp
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)

def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process, or cannot tell: leave its files alone
    return True


def remove_stale_temps(folder) -> list[Path]:
    """Delete the temporary files a killed writer left in `folder`; return their paths.

    Only files named as `temp_path` names them whose writer's process no longer exists on this
    machine are removed, so a writer still running (this process or another) keeps its files.
    A writer on another machine sharing the folder is not seen: do not write into one folder
    from two machines at once. A missing folder has nothing to remove.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.iterdir():
        m = TEMP_NAME.match(p.name)
        if m and not _pid_alive(int(m["pid"])) and p.is_file():
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
    return removed
