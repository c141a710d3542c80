"""The one folder scanner: which files of a class-folder tree are images, and of which class.

Used by `FolderSource`, so by both `layerkit records write` and training. The rules:

- **classes** are the subfolders of the root (a symbolic link to a folder counts), sorted by
  name (case-sensitive, as Keras's ``image_dataset_from_directory``); their names are the
  class names. Files loose in the root and folders nested inside a class folder are ignored.
- **hidden** entries are skipped everywhere: any name starting with ``.`` (``.DS_Store``,
  macOS AppleDouble ``._photo.jpg``, ``.git``, editors' temporaries).
- **images** are the entries of a class folder whose extension, in any case, is one of
  `IMAGE_SUFFIXES`, sorted by name. A symbolic link is followed; one that points nowhere is
  kept, so reading it reports it as a bad image by name (the user meant it as an image).
  Folders, FIFOs and devices named like images are not images (never opened: a FIFO would
  block).
- an **empty class folder** (no images by these rules) is an error naming it: a class no
  image teaches is a mistake in the folder, not a class.
"""

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def is_hidden(name: str) -> bool:
    """Dotfiles, ``.DS_Store`` and AppleDouble ``._x.jpg`` files."""
    return name.startswith(".")


def is_image_name(name: str) -> bool:
    return not is_hidden(name) and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _is_image_entry(path: Path) -> bool:
    """A regular file (through symlinks), or a symlink that points nowhere."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except FileNotFoundError:
        return path.is_symlink()  # dangling: reported when read
    except OSError:
        return False


@dataclass(frozen=True)
class ClassFolders:
    root: Path
    classes: tuple[str, ...]
    files: tuple[Path, ...]
    labels: np.ndarray  # int64, one per file


def scan_class_folders(root) -> ClassFolders:
    """The images of ``root/<class>/<image>`` by the rules above; a `ValueError` says what is wrong."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"expected a folder of class subfolders. Received: {root}")
    entries = sorted(root.iterdir(), key=lambda p: p.name)
    class_dirs = [p for p in entries if not is_hidden(p.name) and p.is_dir()]
    if not class_dirs:
        loose = [p.name for p in entries if not is_hidden(p.name) and p.is_file()]
        raise ValueError(
            f"{root}: no class subfolders found; expected {root}/<class name>/<image files>"
            + (f" (found {len(loose)} loose files such as {loose[0]!r})" if loose else " (the folder is empty)"))
    files, labels, empty = [], [], []
    for label, d in enumerate(class_dirs):
        images = sorted((p for p in d.iterdir() if is_image_name(p.name) and _is_image_entry(p)),
                        key=lambda p: p.name)
        if not images:
            empty.append(d)
        files += images
        labels += [label] * len(images)
    if empty:
        names = ", ".join(repr(d.name) for d in empty)
        raise ValueError(
            f"{root}: class folder{'s' if len(empty) > 1 else ''} {names} hold{'' if len(empty) > 1 else 's'} "
            f"no images (expected files ending in {', '.join(IMAGE_SUFFIXES)}, any case; hidden files "
            "are skipped); remove the folder or add its images")
    return ClassFolders(root, tuple(d.name for d in class_dirs), tuple(files), np.asarray(labels, np.int64))
