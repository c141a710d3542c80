"""The one folder scanner: which files of a class-folder tree are images, and of which class.

Used by `FolderSource`, so by both `layerkit records write` and training. The rules:

- **classes** are the subfolders of the root (a symbolic link to a folder counts), sorted by
  name (case-sensitive, as Keras's ``image_dataset_from_directory``); their names are the
  class names. Files loose in the root and folders nested inside a class folder are ignored.
- **hidden** entries are skipped everywhere: any name starting with ``.`` (``.DS_Store``,
  macOS AppleDouble ``._photo.jpg``, ``.git``, editors' temporaries).
- **images** are the entries of a class folder whose extension, in any case, is one of
  `IMAGE_SUFFIXES`, sorted by name, whatever they turn out to be: a symbolic link is followed
  when read, and an entry named like an image that is no readable image file (a link that
  points nowhere or loops, a link to ``/dev/zero`` or another device, a FIFO, a folder named
  ``x.jpg``) is kept, so that reading it names it as a bad image with its reason, under the
  ``on_bad_image`` rule (`layerkit.data.check`): never skipped in silence, never opened in a way
  that blocks (a FIFO) or reads without end (a device).
- an **empty class folder** (no images by these rules) and a **class entry that is no folder**
  (a link that points nowhere or loops, a folder that cannot be listed) are errors naming each,
  whatever ``on_bad_image`` says: a class no image teaches is a mistake in the folder, not a
  class. `ClassFolderError` names every one at once and carries what the rest of the folder holds.
"""

import errno
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def is_hidden(name: str) -> bool:
    """Dotfiles, ``.DS_Store`` and AppleDouble ``._x.jpg`` files."""
    return name.startswith(".")


def is_image_name(name: str) -> bool:
    return not is_hidden(name) and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


@dataclass(frozen=True)
class ClassFolders:
    root: Path
    classes: tuple[str, ...]
    files: tuple[Path, ...]
    labels: np.ndarray  # int64, one per file


class ClassFolderError(ValueError):
    """Class folders that hold no images or cannot be read; ``found`` is the scan of the others and
    ``problems`` lists (where, why) of each (a caller can report them with other problems)."""

    def __init__(self, message, found: ClassFolders, problems):
        super().__init__(message)
        self.found = found
        self.problems = problems


def _why_not_a_folder(path: Path) -> str | None:
    """Why a non-hidden root entry that is a symbolic link is no class folder (None: it is one, or
    it is a plain file)."""
    if not path.is_symlink():
        return None
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symbolic link that loops (it leads back to itself), not a folder"
        if err.errno == errno.ENOENT:
            return f"a symbolic link to {os.readlink(path)!r}, which does not exist"
        return f"a symbolic link that cannot be followed: {err.strerror or err}"
    return None


def scan_class_folders(root) -> ClassFolders:
    """The images of ``root/<class>/<image>`` by the rules above. A `ValueError` says what is
    wrong with the root; `ClassFolderError` names every empty or unreadable class folder."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"expected a folder of class subfolders. Received: {root}")
    entries = sorted(root.iterdir(), key=lambda p: p.name)
    problems = [(str(p), why) for p in entries if not is_hidden(p.name) and (why := _why_not_a_folder(p))]
    class_dirs = [p for p in entries if not is_hidden(p.name) and p.is_dir()]
    if not class_dirs and not problems:
        loose = [p.name for p in entries if not is_hidden(p.name) and p.is_file()]
        raise ValueError(
            f"{root}: no class subfolders found; expected {root}/<class name>/<image files>"
            + (f" (found {len(loose)} loose files such as {loose[0]!r})" if loose else " (the folder is empty)"))
    files, labels, kept = [], [], []
    for d in class_dirs:
        try:
            images = sorted((p for p in d.iterdir() if is_image_name(p.name)), key=lambda p: p.name)
        except OSError as err:
            problems.append((str(d), f"class folder cannot be listed: {err.strerror or err}"))
            continue
        if not images:
            problems.append((str(d), "class folder holds no images (expected files ending in "
                             f"{', '.join(IMAGE_SUFFIXES)}, any case; hidden files are skipped)"))
            continue
        files += images
        labels += [len(kept)] * len(images)
        kept.append(d.name)
    found = ClassFolders(root, tuple(kept), tuple(files), np.asarray(labels, np.int64))
    if problems:
        problems.sort()
        lines = "\n".join(f"  {where}: {why}" for where, why in problems)
        raise ClassFolderError(
            f"{root}: {len(problems)} class folder{'s' if len(problems) > 1 else ''} cannot be used:\n{lines}\n"
            "Add images to an empty class folder or remove it; remove or repair a broken link.", found, problems)
    return found
