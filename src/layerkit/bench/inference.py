"""Forward passes on a CPU: XLA:CPU vs ONNX Runtime (vs TensorFlow/oneDNN where importable), per zoo model.

    layerkit bench inference                                   # the default models, CPU, minutes
    layerkit bench inference --models squeezenet cnn --batch-size 64 --repeats 5

Each model is built at its default input (``--image-size`` overrides) with random weights and
run on one batch of random pixels through `layerkit.forward.Forward`, the function evaluate,
predict, TTA and the end of training use, once per runtime:

- XLA:CPU (``runtime="jax"``): the first batch compiles (reported apart), then ``--repeats``
  timed batches;
- ONNX Runtime (``runtime="onnxruntime"``): the conversion (jax2onnx, with its plugins loaded
  before the first model so that no model pays for them) and the session are timed apart, then
  the same batches; the largest difference of its logits from XLA's is shown;
- TensorFlow (Keras on the TensorFlow backend, oneDNN on x86) in a child process, where
  TensorFlow is installed; else said and skipped.

Per model: seconds per batch (the median), XLA/ORT, the conversion, and how many images it takes
for the conversion to pay (conversion / the saving per image; the XLA compilation it also avoids
is not counted), beside `layerkit.forward`'s estimate of the conversion. The last line is
``xla/onnxruntime: X`` (the geometric mean of the forward ratios, conversion excluded).
Run it on a quiet machine: every figure is wall time.
"""

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_MODELS = ("airbench94", "wrn-16-4", "resnet-32", "squeezenet", "cnn")


def add_arguments(parser):
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                        help=f"zoo models (default: {' '.join(DEFAULT_MODELS)})")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per batch (default: 256 below 64 px, else 64)")
    parser.add_argument("--image-size", type=int, default=None, help="square input side (default: the model's)")
    parser.add_argument("--repeats", type=int, default=3, help="timed batches per runtime (the median is shown)")
    parser.add_argument("--no-tensorflow", action="store_true", help="skip TensorFlow even where installed")


def _check(args):
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1. Received: {args.repeats}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1. Received: {args.batch_size}")
    if args.image_size is not None and args.image_size < 1:
        raise ValueError(f"--image-size must be >= 1. Received: {args.image_size}")


def build(name, image_size=None):
    """The zoo model `name` at its default input (square side `image_size` where given)."""
    from layerkit import models

    options = {}
    shape = models.registry.defaults(name).get("input_shape")
    if image_size and shape:
        options["input_shape"] = (image_size, image_size, shape[-1])
    return models.create(name, **options)


def timed(fn, repeats):
    """(first call's seconds, median of `repeats` more calls' seconds, the last result)."""
    start = time.perf_counter()
    out = fn()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times), out


def bench_model(name, args) -> dict:
    import numpy as np

    from layerkit import forward as fw
    from layerkit.export import _jax2onnx

    model = build(name, args.image_size)
    shape = tuple(model.input_shape[1:])
    batch = args.batch_size or (256 if shape[0] < 64 else 64)
    x = np.random.default_rng(0).uniform(0, 255, (batch, *shape)).astype("float32")
    row = {"model": name, "input": "x".join(map(str, shape)), "batch": batch, "parameters": model.count_params()}

    xla = fw.Forward(model, logits=True, runtime="jax", batch_size=batch, verbose=False)
    jaxpr = xla._jaxpr()
    eqns = fw.equations(jaxpr)
    row.update(gflops_per_image=fw.flops(jaxpr) / 1e9, equations=eqns)
    row["xla_compile_s"], row["xla_s"], logits = timed(lambda: xla.batch(x), args.repeats)
    row["xla_compile_s"] -= row["xla_s"]

    try:
        _jax2onnx()  # the plugins load once a process: not this model's cost
    except Exception as err:  # noqa: BLE001
        row["onnx_note"] = str(err)
        return row
    row["convert_estimate_s"] = fw.estimate_conversion_seconds(eqns)
    fw._GRAPHS.clear()  # convert, whatever an earlier model left
    start = time.perf_counter()
    ort = fw.Forward(model, logits=True, runtime="onnxruntime", batch_size=batch, verbose=False)
    made = time.perf_counter() - start
    if ort.runtime != "onnxruntime":
        row["onnx_note"] = ort.reason
    else:
        row["convert_s"], row["session_s"] = ort.conversion_seconds, made - ort.conversion_seconds
        _, row["onnx_s"], out = timed(lambda: ort.batch(x), args.repeats)
        row["max_logit_diff"] = float(np.max(np.abs(np.asarray(out) - np.asarray(logits))))
        saved = (row["xla_s"] - row["onnx_s"]) / batch
        row["pays_after_images"] = math.ceil(row["convert_s"] / saved) if saved > 0 else None
    if not args.no_tensorflow:
        row.update(tensorflow(model, x, args.repeats))
    return row


TF_SCRIPT = """
import json, os, statistics, sys, time
os.environ["KERAS_BACKEND"] = "tensorflow"
import numpy as np, layerkit, keras
model, x = layerkit.load_model(sys.argv[1], compile=False), np.load(sys.argv[2])
model.predict_on_batch(x)
times = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter(); model.predict_on_batch(x); times.append(time.perf_counter() - start)
print(json.dumps({"tensorflow_s": statistics.median(times)}))
"""


def tensorflow(model, x, repeats) -> dict:
    """The same model and batch on Keras's TensorFlow backend, in a child process (a process
    has one Keras backend)."""
    import importlib.util

    import numpy as np

    if importlib.util.find_spec("tensorflow") is None:
        return {"tensorflow_note": "TensorFlow is not installed"}
    with tempfile.TemporaryDirectory(prefix="layerkit-bench-") as tmp:
        path, data = Path(tmp) / "m.keras", Path(tmp) / "x.npy"
        model.save(path)
        np.save(data, x)
        env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
        done = subprocess.run([sys.executable, "-c", TF_SCRIPT, str(path), str(data), str(repeats)],
                              capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        return {"tensorflow_note": f"failed: {(done.stderr.strip().splitlines() or ['?'])[-1][:200]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fmt(value, spec=".3f"):
    return "-" if value is None else format(value, spec)


def run(args) -> int:
    import jax

    _check(args)
    print(f"inference: forward passes on {jax.default_backend().upper()} ({os.cpu_count()} cores), "
          f"{args.repeats} timed batches per runtime, seconds per batch (median)")
    header = (f"{'model':<14}{'input':>10}{'batch':>6}{'GFLOP/img':>10}{'XLA':>9}{'ORT':>9}{'TF':>9}"
              f"{'XLA/ORT':>8}{'compile':>9}{'convert':>9}{'(est.)':>8}{'session':>9}{'pays after':>11}"
              f"{'max dlogit':>11}")
    print(header)
    ratios = []
    for name in args.models:
        row = bench_model(name, args)
        ratio = row["xla_s"] / row["onnx_s"] if row.get("onnx_s") else None
        if ratio:
            ratios.append(ratio)
        pays = row.get("pays_after_images")
        print(f"{name:<14}{row['input']:>10}{row['batch']:>6}{row['gflops_per_image']:>10.3f}{row['xla_s']:>9.3f}"
              f"{_fmt(row.get('onnx_s')):>9}{_fmt(row.get('tensorflow_s')):>9}{_fmt(ratio, '.2f'):>8}"
              f"{row['xla_compile_s']:>9.2f}{_fmt(row.get('convert_s'), '.2f'):>9}"
              f"{_fmt(row.get('convert_estimate_s'), '.1f'):>8}{_fmt(row.get('session_s'), '.2f'):>9}"
              f"{(str(pays) + ' img') if pays else ('never' if 'convert_s' in row else '-'):>11}"
              f"{_fmt(row.get('max_logit_diff'), '.1e'):>11}", flush=True)
        for key in ("onnx_note", "tensorflow_note"):
            if key in row:
                print(f"  {name}: {key.split('_')[0]}: {row[key]}")
    print(f"xla/onnxruntime: {math.exp(statistics.mean(map(math.log, ratios))):.2f}" if ratios
          else "xla/onnxruntime: - (no model ran on ONNX Runtime)")
    return 0
