"""`load_model(path)`: load a `.keras` file (a run's checkpoint or any saved model) safely;
`load_weights(model, path)`: a checkpoint's weights and optimizer state into a built model.

Every layerkit class is registered (see `layerkit._registration`), Keras's ``safe_mode`` is on
(no lambdas, no arbitrary code), and each object the file's config names is checked first:
a class that is neither Keras's own nor registered gives a `ValueError` naming it and the file,
instead of Keras's ``TypeError`` deep in deserialisation.
"""

import json
import tempfile
import zipfile
from pathlib import Path

import keras

from layerkit import _registration

# Objects serialised without a module (tuples, numpy arrays, ...) and Keras's own functions.
_KERAS_MODULES = ("keras",)
MAX_CONFIG_BYTES = 64 << 20  # a model's architecture; the weights are elsewhere in the zip


def load_model(path, compile: bool = True) -> keras.Model:
    """The model saved in `path` (a ``.keras`` zip), with ``safe_mode=True``.

    Raises `FileNotFoundError` when `path` does not exist and `ValueError` (naming `path`)
    when it is not a ``.keras`` zip, names a class that is not registered or not allowed,
    or cannot be deserialised (its weights file unreadable included).
    """
    _registration.register()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No model file at {path}")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a .keras model file (the zip archive `model.save` writes)")
    try:
        with zipfile.ZipFile(path) as archive:
            size = archive.getinfo("config.json").file_size
            if size > MAX_CONFIG_BYTES:  # a zip bomb would expand here
                raise ValueError(f"its config.json expands to {size:,} bytes, over {MAX_CONFIG_BYTES:,}")
            config = json.loads(archive.read("config.json"))
    except (KeyError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a .keras model file: no readable config.json ({err})") from err
    for name in _unknown_objects(config):
        raise ValueError(
            f"{path} names {name}, which is neither a Keras class nor a registered (layerkit) one; "
            "refusing to load it (only registered classes are loaded, with safe_mode=True)")
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except (TypeError, ValueError, KeyError, OSError) as err:  # OSError: h5py on a bad model.weights.h5
        raise ValueError(f"Cannot load {path}: {_innermost(err)}") from err


def load_weights(model, path) -> None:
    """``model.load_weights(path)`` for a ``.keras`` checkpoint, its weights file read from disk.

    Keras reads the weights of a ``.keras`` straight out of the zip, where every backward seek
    of h5py re-reads the member from its start: 3.2 s for Xception's 250 MB checkpoint on a CPU,
    0.7 s when ``model.weights.h5`` is first extracted (the same file: what is loaded is the same).
    """
    path = Path(path)
    with zipfile.ZipFile(path) as archive, tempfile.TemporaryDirectory(prefix="layerkit-weights-") as tmp:
        weights = Path(tmp) / "model.weights.h5"  # Keras reads a .weights.h5 by its name
        with archive.open("model.weights.h5") as src, open(weights, "wb") as dst:
            while chunk := src.read(16 << 20):
                dst.write(chunk)
        model.load_weights(weights)


def _unknown_objects(config):
    """Each object in a saved config whose class Keras would have to import from elsewhere."""
    if isinstance(config, list):
        for item in config:
            yield from _unknown_objects(item)
        return
    if not isinstance(config, dict):
        return
    if "class_name" in config and "module" in config:
        module = config.get("module") or ""
        registered, what = config.get("registered_name"), config["class_name"]
        if what == "function" and isinstance(config.get("config"), str):
            registered = what = config["config"]
        known = module.split(".")[0] in _KERAS_MODULES or (
            registered and keras.saving.get_registered_object(registered) is not None)
        if not known:
            yield f"'{module}.{what}'" if module else f"'{what}'"
    for value in config.values():
        yield from _unknown_objects(value)


def _innermost(err: BaseException) -> str:
    while err.__cause__ is not None or err.__context__ is not None:
        err = err.__cause__ or err.__context__
    return f"{type(err).__name__}: {err}"
