"""Read the tensors of a PyTorch ``.pth`` file of the legacy (non-zip) format, without PyTorch.

The legacy format (``torch.save(..., _use_new_zipfile_serialization=False)``, the default
before PyTorch 1.6) is five pickles, then the raw bytes of every storage:

1. the magic number ``0x1950a86a20f9469cfc6c``; 2. the protocol version, 1001;
3. a dict of system info (byte order, type sizes); 4. the saved object (here a state dict);
5. the list of storage keys, in the order their data follows. Each storage is then an int64
   element count and that many elements, little-endian.

Nothing is unpickled freely: `RestrictedUnpickler.find_class` hands out only the globals a
state dict of plain tensors needs (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``
and the ``torch.*Storage`` types), each replaced by a harmless stand-in of ours, and refuses
every other global by its name. Tensors come back as NumPy arrays with their shape, strides and
offset checked against the storage they view.

    >>> tensors = read_pth("efficientnet-lite0-57934424.pth")   # {"_conv_stem.weight": array, ...}
"""

import collections
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001

# torch storage type -> NumPy dtype (little-endian, as every legacy file we accept says)
STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
    "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?",
}
ALLOWED_GLOBALS = (
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    *(("torch", name) for name in STORAGE_DTYPES),
)


class PthError(ValueError):
    """A ``.pth`` file that is not a legacy PyTorch file of plain tensors, or is damaged."""


class _StorageType:
    __slots__ = ("name", "dtype")

    def __init__(self, name):
        self.name, self.dtype = name, np.dtype(STORAGE_DTYPES[name])


class _Storage:
    __slots__ = ("key", "dtype", "numel")

    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel = key, dtype, numel


class _Tensor:
    __slots__ = ("storage", "offset", "shape", "stride")

    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: records where the tensor lies."""
    if not isinstance(storage, _Storage):
        raise PthError(f"a tensor is built from {type(storage).__name__}, not from a storage")
    ints = (storage_offset, *size, *stride)
    if (not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride)
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in ints)):
        raise PthError(f"a tensor has a malformed layout: offset={storage_offset!r}, size={size!r}, "
                       f"stride={stride!r}")
    return _Tensor(storage, storage_offset, size, stride)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only `ALLOWED_GLOBALS` (to stand-ins) and storage references.

    Any other global (``os.system``, ``builtins.eval``, a model class, ...) raises `PthError`
    naming it: a ``.pth`` from elsewhere can hold code that runs when unpickled."""

    def __init__(self, file, where: str):
        super().__init__(file)
        self.where = where
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        allowed = ", ".join(f"{m}.{n}" for m, n in ALLOWED_GLOBALS)
        raise PthError(f"{self.where} names the global '{module}.{name}', which is not allowed: only a "
                       f"state dict of plain tensors is read ({allowed}); refusing to unpickle it")

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, element count[, view metadata])
        if (not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str)
                or isinstance(pid[4], bool) or not isinstance(pid[4], int) or pid[4] < 0
                or (len(pid) == 6 and pid[5] is not None)):
            raise PthError(f"{self.where} holds a reference that is not a plain storage: {pid!r:.200}")
        _, kind, key, _location, numel = pid[:5]
        known = self.storages.get(key)
        if known is None:
            known = self.storages[key] = _Storage(key, kind.dtype, numel)
        elif known.dtype != kind.dtype or known.numel != numel:
            raise PthError(f"{self.where}: storage {key} is named with two types or sizes")
        return known


def _load(f, where, unpickler=None):
    try:
        return (unpickler or RestrictedUnpickler(f, where)).load()
    except PthError:
        raise
    except Exception as err:  # a truncated or malformed pickle
        raise PthError(f"{where} is not a legacy PyTorch file: {type(err).__name__}: {err}") from None


def read_pth(path) -> dict[str, np.ndarray]:
    """The tensors of the legacy ``.pth`` state dict at `path`, by name, as NumPy arrays.

    Raises `PthError` (a `ValueError`) naming `path` for a zip-format file, a global other than
    the tensor and storage ones, a storage that does not match what the tensors say of it, or a
    file cut short; `FileNotFoundError` when there is no file."""
    path = Path(path)
    where = str(path)
    size = path.stat().st_size
    if zipfile.is_zipfile(path):
        raise PthError(f"{where} is a zip-format PyTorch file (torch >= 1.6 default); only the legacy "
                       "format is read here")
    with open(path, "rb") as f:
        magic = _load(f, where)
        if magic != MAGIC:
            raise PthError(f"{where} is not a legacy PyTorch file (magic number {magic!r:.40})")
        protocol = _load(f, where)
        if protocol != PROTOCOL:
            raise PthError(f"{where}: legacy protocol {protocol!r:.40}, expected {PROTOCOL}")
        info = _load(f, where)
        if not isinstance(info, dict) or info.get("little_endian") is not True:
            raise PthError(f"{where} was not written little-endian ({info!r:.200})")
        unpickler = RestrictedUnpickler(f, where)
        state = _load(f, where, unpickler)
        keys = _load(f, where)
        if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, _Tensor)
                                                  for k, v in state.items()):
            raise PthError(f"{where} does not hold a state dict of tensors (name -> tensor)")
        if not isinstance(keys, list) or sorted(keys) != sorted(unpickler.storages):
            raise PthError(f"{where}: the storage list does not match the storages the tensors use")
        data = {}
        for key in keys:
            storage = unpickler.storages[key]
            head = f.read(8)
            nbytes = storage.numel * storage.dtype.itemsize
            if len(head) < 8 or struct.unpack("<q", head)[0] != storage.numel:
                raise PthError(f"{where}: storage {key} should hold {storage.numel} elements; "
                               f"the file says {struct.unpack('<q', head)[0] if len(head) == 8 else 'nothing'}")
            if size - f.tell() < nbytes:
                raise PthError(f"{where} is cut short: storage {key} needs {nbytes:,} bytes, "
                               f"{size - f.tell():,} are left")
            data[key] = np.frombuffer(f.read(nbytes), dtype=storage.dtype)
        if f.read(1):
            raise PthError(f"{where} has bytes after its last storage")
    return {name: _view(name, t, data[t.storage.key], where) for name, t in state.items()}


def _view(name, tensor: _Tensor, storage: np.ndarray, where) -> np.ndarray:
    """The tensor `name` as a C-contiguous array copied out of `storage` (any strides)."""
    shape, stride = tensor.shape, tensor.stride
    if 0 in shape:
        return np.zeros(shape, storage.dtype)
    last = tensor.offset + sum((n - 1) * s for n, s in zip(shape, stride))
    if last >= len(storage):
        raise PthError(f"{where}: tensor {name} (shape {shape}, stride {stride}, offset {tensor.offset}) "
                       f"reaches past its storage of {len(storage)} elements")
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[tensor.offset:], shape=shape,
                                           strides=[s * item for s in stride], writeable=False)
    return view.copy(order="C")  # (ascontiguousarray would make a 0-d tensor 1-d)
