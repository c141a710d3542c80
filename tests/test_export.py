"""`layerkit export`: the exported model gives the checkpoint's outputs."""

import importlib.util
import json
import subprocess
import sys

import keras
import numpy as np
import pytest

import layerkit
from layerkit import export
from layerkit.training import recipes
from layerkit.training.data import RunData
from layerkit.training.run import build_model, compile_model
from tests.test_cli import LAYERKIT
from tests.test_saving import FakePipe


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory as training leaves it (the sample recipe: flip, crop, mean/std, cnn with max-pools)."""
    out = tmp_path_factory.mktemp("run")
    config = recipes.get("sample", smoke_run=True)
    pipe = FakePipe((32, 32, 3))
    data = RunData(pipe, pipe, pipe, tuple(f"c{i}" for i in range(10)), (32, 32, 3), "validation", {})
    model = build_model(config, data, steps_per_epoch=4)
    compile_model(model, config, steps_per_epoch=4)
    model.optimizer.build(model.trainable_variables)
    model.save(out / "best.keras")
    (out / "config.json").write_text(config.to_json())
    (out / "classes.json").write_text(json.dumps(list(data.classes)))
    return out


def _export(*argv):
    return subprocess.run([*LAYERKIT, "export", *map(str, argv)], capture_output=True, text=True, timeout=300)


def _pixels(n=5):
    return np.random.default_rng(1).integers(0, 256, (n, 32, 32, 3)).astype("float32")


def _checkpoint_outputs(run_dir, x):
    return np.asarray(layerkit.load_model(run_dir / "best.keras")(x, training=False))


@pytest.mark.skipif(importlib.util.find_spec("jax2onnx") is None, reason="needs the export extra")
def test_onnx_gives_the_checkpoints_outputs(run_dir, tmp_path):
    done = _export(run_dir, "--format", "onnx", "--out", tmp_path / "m.onnx")
    assert done.returncode == 0, done.stderr[-2000:]
    x = _pixels()
    np.testing.assert_allclose(export.onnx_outputs(tmp_path / "m.onnx", x), _checkpoint_outputs(run_dir, x),
                               rtol=1e-4, atol=1e-6)
    import onnx

    metadata = {p.key: p.value for p in onnx.load(tmp_path / "m.onnx").metadata_props}
    assert json.loads(metadata["classes"]) == [f"c{i}" for i in range(10)]  # the class names travel in the file


def test_keras_is_a_clean_inference_model(run_dir):
    done = _export(run_dir, "--format", "keras")
    assert done.returncode == 0, done.stderr[-2000:]
    path = run_dir / "best-inference.keras"
    assert path.name in done.stdout
    model = layerkit.load_model(path)
    assert getattr(model, "optimizer", None) is None
    assert not [layer.name for layer in model.layers if export.is_augmentation(layer)]
    x = _pixels()
    np.testing.assert_allclose(np.asarray(model(x)), _checkpoint_outputs(run_dir, x), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None, reason="TensorFlow is installed")
def test_saved_model_without_tensorflow_says_what_to_install(run_dir):
    done = _export(run_dir, "--format", "saved_model")
    assert done.returncode == 2
    assert "pip install tensorflow" in done.stderr and "Traceback" not in done.stderr


def test_bad_run_directory_is_one_clear_line(tmp_path):
    done = _export(tmp_path, "--format", "keras")
    assert done.returncode == 2
    assert "not a layerkit run directory" in done.stderr and "Traceback" not in done.stderr


def test_a_layer_jax2onnx_cannot_convert_is_named():
    pytest.importorskip("jax2onnx")

    class Unconvertible(keras.layers.Layer):
        def call(self, x):
            return keras.ops.eigh(keras.ops.einsum("bi,bj->bij", x, x))[0]  # eigh of 4x4: not in jax2onnx 0.17

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), Unconvertible(name="odd")])
    try:
        export.to_onnx(model, "/nonexistent/never.onnx")
    except export.ExportError as err:
        assert "layer 'odd (Unconvertible)'" in str(err)
    else:
        pytest.skip("this jax2onnx converts eigh; no unconvertible layer to show")


def test_a_model_with_two_outputs_exports_both_by_name(tmp_path):
    """alphazero's policy and value heads: output_names lists every output, each under its key."""
    pytest.importorskip("jax2onnx")
    import onnxruntime

    from layerkit.models.alphazero import alphazero

    model = alphazero(1, 8, input_shape=(5, 5, 3))
    export.to_onnx(model, tmp_path / "az.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "az.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["policy", "value"]
    x = np.random.default_rng(0).uniform(0, 255, (2, 5, 5, 3)).astype("float32")
    want = model(x, training=False)
    for name, got in zip(["policy", "value"], session.run(None, {"pixels": x})):
        np.testing.assert_allclose(got, np.asarray(want[name]), rtol=1e-4, atol=1e-4)
