"""`layerkit.forward`: ONNX Runtime gives JAX's logits for every zoo family on real images; TTA and
features through both runtimes agree; a model that does not convert falls back with one line;
converted graphs are cached and reused, and follow the weights."""

import importlib.util
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from layerkit import forward as fw
from layerkit import models
from layerkit.augment import PatchWhitening
from layerkit.data import embedded
from layerkit.data.decode import decode_batch
from layerkit.models import registry
from layerkit.training.tta import predict_probabilities, tta_views

needs_onnx = pytest.mark.skipif(fw._missing("onnxruntime", "onnx", "jax2onnx") is not None,
                                reason="needs the onnx extra (pip install 'layerkit[onnx]')")
FLOWERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "flowers" / "test.npz"

# The cheapest member of each zoo family (every pattern in the registry: a new family must be
# added here, or the test below fails); the family is what decides whether a model converts.
CHEAP = {"wrn-{depth}-{width}": "wrn-10-1", "alphazero-{blocks}-{filters}": "alphazero-2-8",
         "resnet-{depth}": "resnet-8", "revnet-{depth}": "revnet-38"}
# -m large: xception (a 71-pixel minimum, 20M parameters) and the other pretrained backbones
# (issue 20), whose conversions took 20-90 s each of a default run's ~22 minutes on 2 cores
LARGE = {"xception", "efficientnet-lite0", "efficientnet-b0", "mobilenetv3-large", "resnet50"}


def _sample(n=8):
    """`n` real test images of the embedded CIFAR-10 sample, one per class first, in [0, 1]."""
    data = embedded.load("test")
    idx = [int(np.flatnonzero(data.labels == c % 10)[c // 10]) for c in range(n)]
    return decode_batch([data.encoded(i) for i in idx]).astype("float32") / 255


def _flowers(n=4, size=None):
    if not FLOWERS.exists():
        pytest.skip(f"{FLOWERS} is not here (the shared data sets)")
    from layerkit.data.npz import load_npz

    data = load_npz(FLOWERS)
    return decode_batch([data.encoded(i) for i in range(n)], size=size).astype("float32") / 255


def _inputs(model, n=8):
    shape = model.input_shape[1:]
    if shape[-1] != 3:  # alphazero's board planes: 0/1 features, not images
        return np.random.default_rng(0).integers(0, 2, (n, *shape)).astype("float32")
    images = _sample(n)
    return images if images.shape[1:] == shape else decode_batch_like(images, shape)


def decode_batch_like(images, shape):
    return np.stack([keras.ops.convert_to_numpy(keras.ops.image.resize(im, shape[:2])) for im in images])


def _both(model, x, **options):
    ort = fw.Forward(model, runtime="onnxruntime", verbose=False, **options)
    jax = fw.Forward(model, runtime="jax", verbose=False, **options)
    return ort, jax


def _assert_same_logits(a, b):
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    scale = max(1.0, float(np.abs(b).max()))
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5 * scale)


def _family_models():
    return sorted(CHEAP.get(p, p) for p in registry.patterns())


def test_every_family_is_covered():
    for pattern in registry.patterns():
        assert "{" not in pattern or pattern in CHEAP, f"add a cheap member of {pattern} to CHEAP"


@needs_onnx
@pytest.mark.parametrize("name", [n for n in _family_models() if n not in LARGE])
def test_onnx_runtime_gives_jax_logits_on_real_images(name):
    model = models.create(name, **({} if name.startswith("alphazero") else {"input_shape": (32, 32, 3)}))
    x = _inputs(model)
    for layer in model.layers:  # airbench's first layer: fitted on the images, as a run fits it
        if isinstance(layer, PatchWhitening):
            layer.adapt(x)
    ort, jax = _both(model, x, logits=True, batch_size=8)
    assert ort.runtime == "onnxruntime", ort.reason
    a, b = ort(x), jax(x)
    for got, want in zip(keras.tree.flatten(a), keras.tree.flatten(b)):
        assert np.std(np.asarray(want), axis=0).max() > 0  # images tell apart: not a constant output
        _assert_same_logits(got, want)
    if ort.logits:  # the softmax was taken off: probabilities made on the host match the model's
        np.testing.assert_allclose(fw.probabilities(a, True), np.asarray(model(x, training=False)), atol=1e-5)


@pytest.mark.large
@needs_onnx
@pytest.mark.parametrize("name", sorted(LARGE))
def test_large_models_give_jax_logits(name):
    model = models.create(name, input_shape=(71, 71, 3))
    x = _inputs(model, 4)
    ort, jax = _both(model, x, logits=True, batch_size=4)
    _assert_same_logits(ort(x), jax(x))


@needs_onnx
@pytest.mark.parametrize("name", ["squeezenet", "cnn"])
def test_flowers_at_their_size(name):
    model = models.create(name)  # the flowers lab's 192 px
    x = _flowers(4, size=model.input_shape[1:3]) * 255  # pixels as the flowers recipes feed them
    ort, jax = _both(model, x, logits=True, batch_size=4)
    a, b = ort(x), jax(x)
    assert ort.logits and np.std(b, axis=0).max() > 0
    _assert_same_logits(a, b)


@pytest.fixture(scope="module")
def sample_model():
    """A run's model as training builds it (the sample recipe: flip, crop, mean/std, airbench)."""
    from layerkit.training import recipes
    from layerkit.training.data import RunData
    from layerkit.training.run import build_model
    from tests.test_saving import FakePipe

    keras.utils.set_random_seed(0)
    config = recipes.get("sample", smoke_run=True)
    pipe = FakePipe((32, 32, 3))
    data = RunData(pipe, pipe, pipe, tuple(f"c{i}" for i in range(10)), (32, 32, 3), "validation", {})
    return build_model(config, data, steps_per_epoch=4)


@needs_onnx
def test_tta_is_the_same_through_both_runtimes(sample_model):
    x = _sample(16) * 255
    ort, jax = _both(sample_model, x, logits=True, batch_size=8)
    assert ort.runtime == "onnxruntime" and ort.logits
    for mode in ("none", "flip", "6view"):
        a, b = predict_probabilities(ort, x, mode), predict_probabilities(jax, x, mode)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(a.argmax(-1), b.argmax(-1))
    # 6view: the softmax of the views' weighted logits (airbench's TTA)
    logits = sum(w * jax(v) for w, v in tta_views(x, "6view"))
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(predict_probabilities(ort, x, "6view"), expected / expected.sum(-1, keepdims=True),
                               rtol=1e-4, atol=1e-6)


@needs_onnx
def test_features_of_a_frozen_backbone_through_both_runtimes():
    net = models.create("wrn-10-1", input_shape=(32, 32, 3))
    backbone = keras.Model(net.inputs, net.get_layer("gap").output)
    x = _sample(8)
    a = fw.forward(backbone, x, batch_size=3, runtime="onnxruntime", verbose=False)
    b = fw.forward(backbone, x, batch_size=3, runtime="jax", verbose=False)
    assert a.shape == b.shape == (8, backbone.output_shape[-1])
    _assert_same_logits(a, b)


class Unconvertible(keras.layers.Layer):
    def call(self, x):
        return keras.ops.eigh(keras.ops.einsum("bi,bj->bij", x, x))[0]  # eigh: not in jax2onnx 0.17


@needs_onnx
def test_a_model_that_does_not_convert_runs_on_jax_after_one_line(capsys):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4), Unconvertible(name="odd")])
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    f = fw.Forward(model, runtime="onnxruntime")
    lines = capsys.readouterr().err.strip().splitlines()
    if f.runtime == "onnxruntime":
        pytest.skip("this jax2onnx converts eigh; no unconvertible model to show")
    assert f.runtime == "jax" and len(lines) == 1
    assert lines[0].startswith("layerkit: forward passes on JAX") and "does not convert to ONNX" in lines[0]
    np.testing.assert_allclose(f(x), np.asarray(model(x)), rtol=1e-5, atol=1e-6)
    assert f.record()["runtime"] == "jax" and "does not convert" in f.record()["reason"]


def test_without_the_extra_everything_runs_on_jax_after_one_line(monkeypatch, capsys):
    monkeypatch.setattr(fw, "_missing", lambda *names: names[0])
    model = models.create("dense", input_shape=(8, 8, 3))
    x = _sample(4)[:, :8, :8]
    f = fw.Forward(model, logits=True, runtime="onnxruntime")
    line = capsys.readouterr().err.strip()
    assert f.runtime == "jax" and "\n" not in line
    assert "onnxruntime is not installed (pip install 'layerkit[onnx]'" in line
    np.testing.assert_allclose(fw.probabilities(f(x), True), np.asarray(model(x)), atol=1e-6)


@needs_onnx
def test_the_graph_is_cached_reused_and_follows_the_weights(tmp_path, monkeypatch):
    model = models.create("wrn-10-1", input_shape=(16, 16, 3))
    x = _sample(4)[:, :16, :16]
    fw._GRAPHS.clear()
    first = fw.Forward(model, logits=True, runtime="onnxruntime", cache_dir=tmp_path, verbose=False)
    assert first.runtime == "onnxruntime" and not first.cached and first.conversion_seconds > 0
    files = list(tmp_path.glob("*.onnx"))
    assert [p.name for p in files] == [first.cache_path.name] and first.cache_path.name.startswith("wrn-10-1-")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # written atomically: no temporary left
    before = first(x)

    # Another process (the in-memory graphs gone) with the cache: no conversion at all.
    fw._GRAPHS.clear()
    monkeypatch.setattr(fw.Forward, "_convert", lambda self: pytest.fail("converted again"))
    second = fw.Forward(model, logits=True, cache_dir=tmp_path, images=1, verbose=False)
    assert second.runtime == "onnxruntime" and second.cached and second.conversion_seconds == 0
    assert "converted before" in second.record()["reason"]
    np.testing.assert_array_equal(second(x), before)

    # New weights (as loading the best epoch's): both objects run them, the same graph serves.
    rng = np.random.default_rng(1)
    model.set_weights([w + 0.1 * rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])
    jax = fw.Forward(model, logits=True, runtime="jax", verbose=False)
    assert not np.allclose(jax(x), before, atol=1e-3)
    _assert_same_logits(first(x), jax(x))
    _assert_same_logits(second(x), jax(x))
    assert list(tmp_path.glob("*.onnx")) == files

    # Another architecture: another key, so a stale graph is never used for it.
    other = models.create("wrn-10-2", input_shape=(16, 16, 3))
    monkeypatch.undo()
    third = fw.Forward(other, logits=True, runtime="onnxruntime", cache_dir=tmp_path, verbose=False)
    assert not third.cached and third.cache_path != first.cache_path


@needs_onnx
def test_converting_pays_only_for_enough_work(monkeypatch):
    monkeypatch.delenv(fw.ENV, raising=False)
    model = models.create("wrn-10-1", input_shape=(16, 16, 3))
    fw._GRAPHS.clear()
    monkeypatch.setattr(fw, "estimate_conversion_seconds", lambda eqns: 60.0)  # a big graph's
    few = fw.Forward(model, images=1, verbose=False)
    assert few.runtime == "jax" and few.reason.startswith("converting would not pay: ~60.0 s to convert vs ~")
    many = fw.Forward(model, images=10 ** 7, verbose=False)
    assert many.runtime == "onnxruntime"
    assert fw.Forward(model, images=1, verbose=False).runtime == "onnxruntime"  # converted now: no cost
    monkeypatch.setenv(fw.ENV, "jax")
    assert fw.Forward(model, images=10 ** 7, verbose=False).runtime == "jax"
    monkeypatch.setenv(fw.ENV, "fast")
    with pytest.raises(ValueError, match="runtime must be one of auto, onnxruntime, jax. Received: 'fast'"):
        fw.Forward(model)


def test_estimates_count_convolutions():
    import jax

    x = jax.ShapeDtypeStruct((2, 8, 8, 3), "float32")
    conv = keras.layers.Conv2D(5, 3, padding="same")
    conv.build((None, 8, 8, 3))
    jaxpr = jax.make_jaxpr(lambda v: conv(v))(x)
    assert fw.flops(jaxpr) == 2 * (2 * 8 * 8 * 5) * (3 * 3 * 3)
    assert fw.equations(jaxpr) >= 2


@needs_onnx
def test_a_run_converts_once_and_evaluate_reuses_its_graph(tmp_path, monkeypatch):
    from layerkit.training import recipes, train
    from layerkit.training.inference import evaluate_run, predict_files

    monkeypatch.setenv(fw.ENV, "onnxruntime")
    config = recipes.get("sample", smoke_run=True)
    out = tmp_path / "run"
    results = train(config, out, verbose=0)
    assert results["forward"]["runtime"] == "onnxruntime", results["forward"]
    assert json.loads((out / "results.json").read_text())["forward"] == results["forward"]
    graphs = list((out / fw.CACHE_FOLDER).glob("*.onnx"))
    assert len(graphs) == 1  # final and best weights, plain and TTA: one conversion

    fw._GRAPHS.clear()  # as a new process
    monkeypatch.setenv(fw.ENV, "auto")
    monkeypatch.setattr(fw.Forward, "_convert", lambda self: pytest.fail("converted again"))
    on_ort = evaluate_run(out, tta="6view")
    assert on_ort["forward"]["runtime"] == "onnxruntime" and on_ort["forward"]["cached_graph"]
    monkeypatch.setenv(fw.ENV, "jax")
    on_jax = evaluate_run(out, tta="6view")
    assert on_jax["forward"]["runtime"] == "jax"
    assert on_ort["accuracy"] == on_jax["accuracy"] and on_ort["loss"] == pytest.approx(on_jax["loss"], rel=1e-5)
    assert results["test_accuracy_best_tta"] == on_ort["accuracy"]
    image = tmp_path / "cat.png"
    from PIL import Image

    Image.fromarray((_sample(1)[0] * 255).astype("uint8")).save(image)
    monkeypatch.setenv(fw.ENV, "auto")
    [(_, ranked_ort)] = predict_files(out, [image])
    monkeypatch.setenv(fw.ENV, "jax")
    [(_, ranked_jax)] = predict_files(out, [image])
    assert [c for c, _ in ranked_ort] == [c for c, _ in ranked_jax]
    np.testing.assert_allclose([p for _, p in ranked_ort], [p for _, p in ranked_jax], rtol=1e-4)


def _bench_args(*argv):
    import argparse

    from layerkit.bench import inference

    parser = argparse.ArgumentParser()
    inference.add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize("flag, value", [("--repeats", "0"), ("--batch-size", "0"), ("--image-size", "0")])
def test_bench_refuses_bad_counts_with_the_value(flag, value):
    from layerkit.bench import BENCHMARKS, inference

    assert BENCHMARKS["inference"] == "layerkit.bench.inference"
    with pytest.raises(ValueError, match=f"{flag} must be >= 1. Received: {value}"):
        inference.run(_bench_args(flag, value))


def test_bench_puts_the_runtimes_side_by_side(capsys):
    from layerkit.bench import inference

    assert inference.run(_bench_args("--models", "dense", "--image-size", "8", "--batch-size", "4",
                                     "--repeats", "1", "--no-tensorflow")) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].split()[:5] == ["model", "input", "batch", "GFLOP/img", "XLA"]
    row = lines[2].split()
    assert row[:3] == ["dense", "8x8x3", "4"]
    if fw._missing("onnxruntime", "onnx", "jax2onnx") is None:
        assert lines[-1].startswith("xla/onnxruntime: ") and float(lines[-1].split()[-1]) > 0
    else:
        assert lines[-1] == "xla/onnxruntime: - (no model ran on ONNX Runtime)"
