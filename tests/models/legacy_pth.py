"""Write PyTorch's legacy (non-zip) .pth format without PyTorch, for the reader's tests.

The pickles name ``torch._utils._rebuild_tensor_v2`` and ``torch.FloatStorage`` as PyTorch
does; stand-in modules are put in ``sys.modules`` only while pickling, so that `pickle` can
name them."""

import collections
import pickle
import struct
import sys
import types

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
STORAGES = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage"}


class _Storage:
    def __init__(self, key, array):
        self.key, self.array = key, array


class _Tensor:
    def __init__(self, storage, offset, shape, stride):
        self.args = (storage, offset, shape, stride)

    def __reduce__(self):
        return sys.modules["torch._utils"]._rebuild_tensor_v2, (*self.args, False, collections.OrderedDict())


def write_legacy_pth(path, tensors: dict, layouts: dict | None = None, extra_pickle=None) -> None:
    """`tensors` (name -> array) as a legacy state dict. `layouts`: name -> (shape, stride,
    offset, flat storage) to write a tensor as a strided view of its storage."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in STORAGES.values():
        setattr(torch, name, type(name, (), {"__module__": "torch", "__qualname__": name}))
    torch._utils = utils
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    storages = []
    state = collections.OrderedDict()
    for i, (name, array) in enumerate(tensors.items()):
        array = np.asarray(array)
        if layouts and name in layouts:
            shape, stride, offset, flat = layouts[name]
        else:
            c = array.copy(order="C")
            flat, shape, offset = c.ravel(), c.shape, 0
            stride = tuple(s // c.itemsize for s in c.strides)
        storage = _Storage(str(1000 + i), flat)
        storages.append(storage)
        state[name] = _Tensor(storage, offset, tuple(shape), tuple(stride))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                kind = getattr(torch, STORAGES[obj.array.dtype])
                return ("storage", kind, obj.key, "cpu", obj.array.size, None)
            return None

    try:
        with open(path, "wb") as f:
            for header in (MAGIC, 1001, {"protocol_version": 1001, "little_endian": True,
                                         "type_sizes": {"short": 2, "int": 4, "long": 4}}):
                pickle.dump(header, f, protocol=2)
            if extra_pickle is not None:
                f.write(extra_pickle)
            else:
                Pickler(f, protocol=2).dump(state)
            pickle.dump([s.key for s in storages], f, protocol=2)
            for s in storages:
                f.write(struct.pack("<q", s.array.size))
                f.write(s.array.astype(s.array.dtype.newbyteorder("<")).tobytes())
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
