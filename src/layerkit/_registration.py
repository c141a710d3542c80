"""Register layerkit's serializable classes with Keras as soon as Keras is imported.

`import layerkit` must not import Keras (1.8 s with JAX: the command line would pay it for
``--help``), yet after `import layerkit` a plain ``keras.saving.load_model("best.keras")`` must
find ``layerkit>RandomReflectCrop``, ``layerkit>OneCycle``, ... So `install()` registers them at
once when Keras is already imported, and otherwise puts a finder first on `sys.meta_path` that
registers them when the import that brought Keras in has finished: the outermost import of
``keras`` or of a ``layerkit.*`` module, so that no layerkit module is then half-initialised.
The finder removes itself once the classes are registered.
"""

import importlib
import importlib.abc
import sys
import threading

# Every module that defines a `@keras.saving.register_keras_serializable` class (a test checks
# this list against the source tree): layers, blocks, schedules, the loss, an initializer.
SERIALIZABLE_MODULES = (
    "layerkit.blocks",
    "layerkit.augment",
    "layerkit.training.losses",
    "layerkit.training.schedules",
    "layerkit.models.initializers",
    "layerkit.models.preprocessing",
    "layerkit.training.optimizers",
)

_lock = threading.RLock()
_local = threading.local()  # .depth: nesting of watched imports in this thread
_registered = False
_registering = False


def registered() -> bool:
    return _registered


def register() -> None:
    """Import every module of `SERIALIZABLE_MODULES` (which imports Keras). Idempotent."""
    global _registered, _registering
    with _lock:
        if _registered or _registering:
            return
        _registering = True
        try:
            for name in SERIALIZABLE_MODULES:
                importlib.import_module(name)
            _registered = True
        finally:
            _registering = False
    _uninstall()


def install() -> None:
    """Register now if Keras is imported, else when it is (see the module docstring)."""
    if "keras" in sys.modules:
        register()
        return
    with _lock:
        if not any(isinstance(f, _WatchImports) for f in sys.meta_path):
            sys.meta_path.insert(0, _WatchImports())


def _uninstall() -> None:
    with _lock:
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _WatchImports)]


def _import_finished() -> None:
    if getattr(_local, "depth", 0) == 0 and not _registered and not _registering and "keras" in sys.modules:
        register()


class _WatchImports(importlib.abc.MetaPathFinder):
    """Finds ``keras`` and ``layerkit.*`` with the other finders and wraps their loaders so
    that the end of the outermost such import is seen."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras" and not name.startswith("layerkit."):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _CountingLoader(spec.loader)
        return spec


class _CountingLoader(importlib.abc.Loader):
    """Delegates to the real loader; counts nested imports and registers after the outermost."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        _local.depth = getattr(_local, "depth", 0) + 1
        try:
            self._loader.exec_module(module)
        finally:
            _local.depth -= 1
        _import_finished()

    def __getattr__(self, name):  # get_source, get_resource_reader, is_package, ...
        return getattr(self._loader, name)
