"""The legacy .pth reader: tensors read exactly, and nothing but tensors unpickled."""

import os
import pickle

import numpy as np
import pytest

from layerkit.models.pth import PthError, read_pth
from tests.models.legacy_pth import write_legacy_pth


def test_tensors_read_back_exactly_whatever_their_strides(tmp_path):
    rng = np.random.default_rng(0)
    conv = rng.normal(size=(4, 3, 3, 3)).astype("float32")
    hwio = np.ascontiguousarray(conv.transpose(2, 3, 1, 0))  # stored (kh, kw, in, out), viewed (out, in, kh, kw)
    tensors = {"conv.weight": conv, "bn.running_var": rng.uniform(size=4).astype("float32"),
               "bn.num_batches_tracked": np.array(7, "int64")}
    layouts = {"conv.weight": ((4, 3, 3, 3), (1, 4, 36, 12), 0, hwio.ravel())}
    path = tmp_path / "m.pth"
    write_legacy_pth(path, tensors, layouts)
    got = read_pth(path)
    assert list(got) == list(tensors)
    for name, value in tensors.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape
        np.testing.assert_array_equal(got[name], value)


class _Run:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_foreign_global_is_refused_by_name_and_never_called(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    write_legacy_pth(path, {}, extra_pickle=pickle.dumps({"x": _Run(f"touch {marker}")}, protocol=2))
    with pytest.raises(PthError, match=r"names the global '(posix|nt)\.system', which is not allowed"):
        read_pth(path)
    assert not marker.exists()


def test_damaged_files_are_refused(tmp_path):
    path = tmp_path / "m.pth"
    write_legacy_pth(path, {"w": np.ones((3, 2), "float32")})
    whole = path.read_bytes()
    path.write_bytes(whole[:-5])
    with pytest.raises(PthError, match="cut short"):
        read_pth(path)
    path.write_bytes(whole + b"x")
    with pytest.raises(PthError, match="bytes after its last storage"):
        read_pth(path)
    path.write_bytes(b"PK\x03\x04" + whole)
    with pytest.raises(PthError, match="not a legacy PyTorch file"):
        read_pth(path)
    # a view reaching past its storage
    write_legacy_pth(path, {"w": np.ones(4, "float32")}, {"w": ((4,), (2,), 0, np.ones(4, "float32"))})
    with pytest.raises(PthError, match="reaches past its storage"):
        read_pth(path)
