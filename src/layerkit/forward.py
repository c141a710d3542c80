"""Forward passes for every forward-only job: one function that picks its runtime.

    from layerkit.forward import forward
    features = forward(backbone, images, batch_size=64)          # numpy in, numpy out

`layerkit evaluate`, `predict`, the end-of-training test evaluation, TTA (each view) and a frozen
backbone's features all run through `Forward`. On a CPU the model runs in **ONNX Runtime** when
the ``onnx`` extra is installed (``pip install 'layerkit[onnx]'``) and converting pays, else in
**JAX** (XLA); on a GPU or TPU always in JAX. The runtime is said once on the console (stderr) and
in `Forward.record()`, which a run writes into ``results.json`` as ``"forward"``. A model that
does not convert runs in JAX after a one-line note saying why.

Why: XLA's CPU convolutions are slow. ONNX Runtime ran the same forward pass 1.3x (airbench94)
to 10.7x (EfficientNetB0) faster on 2 cores (issue 24; ``layerkit bench inference`` measures it).

The conversion (jax2onnx; see `layerkit.export`) traces the model's inference function with its
**weights as graph inputs** and a dynamic batch, so one converted graph serves every batch size
and every set of weights of that architecture: the weights are bound as ONNX initializers when a
session is made (ONNX Runtime folds them as constants), which costs milliseconds. The graph is
cached under a key of the architecture (the model's config, its variables' shapes and dtypes,
the input shape, which output, the versions of layerkit, Keras, JAX and jax2onnx): in memory
for the process, and in `cache_dir` when one is given (a run keeps its graphs in
``RUN/onnx-cache/``, written atomically), so the end of training converts once for the final
and the best weights, and a later ``evaluate`` or ``predict`` of that run converts nothing.

When converting pays (``runtime="auto"``, no cached graph): the conversion costs seconds, and
more than linearly with the graph's size (jax2onnx's graph passes); it is made only when its
estimate is below the estimated saving on the images this `Forward` is told it will see
(`ESTIMATE` below: XLA compilation avoided, plus the images' FLOPs at XLA:CPU's rate times the
smallest ONNX Runtime speed-up measured). ``LAYERKIT_FORWARD=onnxruntime`` converts whatever the
estimate says, ``LAYERKIT_FORWARD=jax`` never converts.
"""

import hashlib
import json
import math
import os
import re
import sys
import time
import weakref
from pathlib import Path

import numpy as np

RUNTIMES = ("auto", "onnxruntime", "jax")
ENV = "LAYERKIT_FORWARD"
FORMAT = 1  # of the cached graphs: part of their key; bump when the conversion changes
CACHE_FOLDER = "onnx-cache"  # a run's cached graphs: RUN/onnx-cache/<key>.onnx
INSTALL = "pip install 'layerkit[onnx]'"

# Costs on 2 CPU cores (measured under load, 2026-12: `layerkit bench inference` reports them):
# jax2onnx's conversion ~ 0.3 s + 4 ms/equation + 30 us/equation^2 of the jaxpr (airbench94: 127
# equations, 0.5 s; squeezenet 247, 1.5 s; resnet-32 465, 3.8 s; xception 653, 18 s), plus
# loading its plugins once a process; XLA's compilation of the forward pass ~ 0.6 s + 8 ms per
# equation; XLA:CPU ~ 10 GFLOP/s a core on convolutions; ONNX Runtime at least 1.3x faster.
ESTIMATE = {"convert_s": 0.3, "convert_s_per_eqn": 4e-3, "convert_s_per_eqn2": 3e-5, "plugins_s": 2.0,
            "compile_s": 0.6, "compile_s_per_eqn": 8e-3, "xla_gflops_per_core": 10.0, "speedup": 1.3}

_GRAPHS: dict = {}  # key -> converted graph (ModelProto bytes, weights as inputs): this process's cache
_INFERENCE = weakref.WeakKeyDictionary()  # model -> its inference model (made once: see _inference_model)


def forward(model, images, batch_size: int = 256, **options):
    """`model`'s outputs (numpy, the model's output structure) on `images` (an array of the
    model's input, batched by `batch_size`, or an iterable of such batches), through the runtime
    `Forward` picks. `options`: `Forward`'s (``runtime``, ``cache_dir``, ``verbose``)."""
    n = len(images) if hasattr(images, "shape") else len(getattr(images, "labels", ())) or None
    return Forward(model, batch_size=batch_size, images=n, **options)(images)


class Forward:
    """`model`'s inference function on a runtime chosen once: ``self.runtime`` is
    ``"onnxruntime"`` or ``"jax"`` (the model's Keras backend's name on another backend).

    `logits`: for a classifier ending in a softmax (the zoo's), give the softmax's input
    instead (``self.logits`` says whether there was one): probabilities are then made on the host
    (`probabilities`), the same way for both runtimes, and comparing runtimes compares logits,
    not saturated probabilities. `images`: how many images this object will be asked for in all
    (it decides whether converting pays; None: as if many). `batch_size`: of arrays passed in.
    `cache_dir`: where converted graphs are kept across processes (None: this process only).
    `verbose`: say the runtime on stderr (one line). The object follows the model's weights:
    weights assigned or loaded after it was made are the ones it runs with.
    """

    def __init__(self, model, *, logits: bool = False, images: int | None = None, batch_size: int = 256,
                 runtime: str | None = None, cache_dir=None, verbose: bool = True):
        import keras

        runtime = (runtime or os.environ.get(ENV, "") or "auto").strip().lower()
        if runtime not in RUNTIMES:
            where = f" (from {ENV})" if os.environ.get(ENV) else ""
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}. Received: {runtime!r}{where}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer. Received: batch_size={batch_size!r}")
        self.model = _inference_model(model)
        self.batch_size = batch_size
        self._softmax = _final_softmax(self.model) if logits else None
        self.logits = self._softmax is not None
        self.input_shape = tuple(self.model.input_shape[1:])
        self.input_dtype = str(self.model.inputs[0].dtype) if getattr(self.model, "inputs", None) else "float32"
        self.conversion_seconds = 0.0
        self.cached = False
        self.cache_path = None
        self.note = None
        self._session = None
        self._bound = None  # the variable values the session holds
        self._jit = None
        self._jit_batch = None
        if keras.backend.backend() != "jax":
            self.runtime, self.reason = keras.backend.backend(), f"KERAS_BACKEND is {keras.backend.backend()}"
        else:
            self.runtime, self.reason = self._choose(runtime, images, cache_dir)
        if verbose:
            print(f"layerkit: forward passes on {self.describe()}", file=sys.stderr)

    # === Choosing the runtime ===

    def _choose(self, runtime, images, cache_dir):
        import jax

        if runtime == "jax":
            return "jax", "asked for (runtime=jax)"
        if runtime == "auto" and jax.default_backend() != "cpu":
            return "jax", f"on {jax.default_backend()}"
        missing = _missing("onnxruntime", "onnx")
        if missing:
            self.note = f"{missing} is not installed ({INSTALL} for ONNX Runtime on a CPU)"
            return "jax", self.note
        jaxpr = self._jaxpr()
        key = self._key(jaxpr)
        if cache_dir is not None:
            self.cache_path = Path(cache_dir) / f"{key}.onnx"
        graph, source = _GRAPHS.get(key), "the graph converted earlier in this process"
        if graph is None and self.cache_path is not None and self.cache_path.exists():
            try:
                graph, source = self.cache_path.read_bytes(), f"the graph converted before ({self.cache_path})"
            except OSError:
                graph = None
        if graph is not None:
            self.cached = True
        elif _missing("jax2onnx"):  # onnxruntime alone runs graphs converted before
            self.note = f"jax2onnx is not installed ({INSTALL} to convert models for ONNX Runtime)"
            return "jax", self.note
        else:
            if runtime == "auto":
                pays, why = self._conversion_pays(jaxpr, images)
                if not pays:
                    return "jax", why
            try:
                graph = self._convert()
            except Exception as err:  # noqa: BLE001 - any failure falls back, saying why
                self.note = f"{self.model.name} does not convert to ONNX ({_first_line(err)})"
                return "jax", self.note
        _GRAPHS[key] = graph
        if self.cache_path is not None and not self.cached:
            self._save(graph)
        self._graph = graph
        try:
            self._bind()
        except Exception as err:  # noqa: BLE001 - a graph ONNX Runtime refuses: JAX
            self.note = f"ONNX Runtime cannot run the converted {self.model.name} ({_first_line(err)})"
            return "jax", self.note
        if self.cached:
            return "onnxruntime", source
        where = f", cached in {self.cache_path}" if self.cache_path is not None else ""
        return "onnxruntime", f"converted in {self.conversion_seconds:.1f} s{where}"

    def _conversion_pays(self, jaxpr, images):
        if images is None:
            return True, ""
        eqns, gflops = equations(jaxpr), flops(jaxpr) / 1e9
        convert = estimate_conversion_seconds(eqns)
        xla_s = images * gflops / (ESTIMATE["xla_gflops_per_core"] * max(1, os.cpu_count() or 1))
        saved = (ESTIMATE["compile_s"] + ESTIMATE["compile_s_per_eqn"] * eqns
                 + xla_s * (1 - 1 / ESTIMATE["speedup"]))
        if convert < saved:
            return True, ""
        return False, (f"converting would not pay: ~{convert:.1f} s to convert vs ~{saved:.1f} s saved on "
                       f"{images} images ({ENV}=onnxruntime converts anyway)")

    def describe(self) -> str:
        """One line: the runtime and why (the console note)."""
        if self.runtime == "onnxruntime":
            return f"ONNX Runtime (CPU): {self.reason}"
        if self.runtime == "jax":
            import jax

            return f"JAX (XLA:{jax.default_backend().upper()}): {self.reason}"
        return f"Keras ({self.runtime}): {self.reason}"

    def record(self) -> dict:
        """What a run records in results.json: runtime, why, conversion seconds, cache use."""
        out = {"runtime": self.runtime, "reason": self.reason}
        if self.runtime == "onnxruntime":
            out.update(conversion_seconds=round(self.conversion_seconds, 2), cached_graph=self.cached)
        if self.logits:
            out["probabilities"] = "softmax of the logits, on the host"
        return out

    # === Running ===

    def __call__(self, images):
        """Outputs on `images`: an array (batched by `batch_size`) or an iterable of arrays, or
        of (images, labels) pairs as a `Pipeline` gives them (batched as they come)."""
        if hasattr(images, "shape"):  # a NumPy or JAX array
            x = np.asarray(images)
            batches = (x[i:i + self.batch_size] for i in range(0, len(x), self.batch_size))
            total = len(x)
        else:
            batches, total = _batches(images), None
        outs = [_flatten(self.batch(b)) for b in batches]
        if not outs:
            raise ValueError("no images to run the model on")
        flat = [np.concatenate(parts) for parts in zip(*outs)]
        if total is not None and len(flat[0]) != total:
            raise AssertionError(f"{len(flat[0])} outputs for {total} images")
        return self._pack(flat)

    def batch(self, x):
        """Outputs on one batch `x` (any size)."""
        x = np.asarray(x, self.input_dtype)
        if self.runtime == "onnxruntime":
            try:
                return self._pack(self._run_onnx(x))
            except Exception as err:  # noqa: BLE001 - a run ONNX Runtime refuses: JAX from here on
                self.note = f"ONNX Runtime failed on {self.model.name} ({_first_line(err)})"
                self.runtime, self.reason, self._session = "jax", self.note, None
                print(f"layerkit: forward passes on {self.describe()}", file=sys.stderr)
        if self.runtime == "jax":
            return self._pack(self._run_jax(x))
        return self.model.predict_on_batch(x)  # another Keras backend

    def _pack(self, flat):
        import keras

        if len(flat) == 1 and not isinstance(getattr(self.model, "output", None), (dict, list, tuple)):
            return flat[0]
        return keras.tree.pack_sequence_as(self.model.output, list(flat))

    def _values(self):
        return [v.value for v in self.model.trainable_variables], [v.value for v in self.model.non_trainable_variables]

    def _fn(self):
        """f(trainable, non_trainable, x) -> flat outputs (the logits where asked): traced
        with the softmax off where `logits`, on every trace (JAX's and jax2onnx's)."""
        import keras

        model, softmax = self.model, self._softmax

        def fn(trainable, non_trainable, x):
            with _without_softmax(softmax):
                y, _ = model.stateless_call(trainable, non_trainable, x, training=False)
            return [keras.ops.cast(t, "float32") if "float" in str(t.dtype) else t for t in keras.tree.flatten(y)]

        return fn

    def _run_jax(self, x):
        import jax

        if self._jit is None:
            self._jit = jax.jit(self._fn())
        # One compiled shape: the first batch's size (at most batch_size); a shorter batch is
        # padded to it, a longer one split.
        n = len(x)
        size = self._jit_batch = self._jit_batch or min(n, self.batch_size)
        if n > size:
            return [np.concatenate(parts) for parts in zip(*(self._run_jax(x[i:i + size]) for i in range(0, n, size)))]
        if n < size:
            x = np.concatenate([x, np.zeros((size - n, *x.shape[1:]), x.dtype)])
        trainable, frozen = self._values()
        return [np.asarray(y)[:n] for y in self._jit(trainable, frozen, x)]

    def _run_onnx(self, x):
        values = self._flat_values()
        if self._bound is None or len(values) != len(self._bound) or any(a is not b for a, b in zip(values, self._bound)):
            self._bind(values)
        return self._session.run(None, {"pixels": x})

    # === Converting, caching, binding ===

    def _flat_values(self):
        trainable, frozen = self._values()
        return trainable + frozen

    def _jaxpr(self):
        import jax

        trainable, frozen = self._values()
        spec = jax.ShapeDtypeStruct((1, *self.input_shape), self.input_dtype)
        return jax.make_jaxpr(self._fn())(trainable, frozen, spec)

    def _key(self, jaxpr) -> str:
        """The converted graph's key: the traced computation itself (the jaxpr's text, its
        constants' bytes) and the versions that convert it; not the weights (graph inputs)."""
        import jax
        import keras

        from layerkit import __version__

        digest = hashlib.sha256()
        versions = {"format": FORMAT, "layerkit": __version__, "keras": keras.__version__, "jax": jax.__version__,
                    "jax2onnx": _version("jax2onnx"), "logits": self.logits}
        digest.update(json.dumps(versions, sort_keys=True).encode())
        digest.update(str(jaxpr.jaxpr).encode())
        for const in jaxpr.consts:
            const = np.asarray(const)
            digest.update(f"{const.dtype}{const.shape}".encode())
            digest.update(np.ascontiguousarray(const).tobytes())
        return f"{re.sub(r'[^A-Za-z0-9._-]', '_', self.model.name)}-{digest.hexdigest()[:20]}"

    def _convert(self) -> bytes:
        import jax
        import keras

        from layerkit.export import _jax2onnx, _nhwc_pools_as_2d

        start = time.perf_counter()
        jax2onnx = _jax2onnx()
        trainable, frozen = self._values()
        nt = len(trainable)
        fn = self._fn()

        def flat(x, *weights):
            return fn(list(weights[:nt]), list(weights[nt:]), x)

        specs = [("B", *self.input_shape)] + [jax.ShapeDtypeStruct(w.shape, w.dtype) for w in trainable + frozen]
        names = ["pixels"] + [f"w{i}" for i in range(len(specs) - 1)]
        outputs = len(keras.tree.flatten(self.model.output)) if getattr(self.model, "outputs", None) else 1
        proto = jax2onnx.to_onnx(flat, inputs=specs, model_name=self.model.name, input_names=names,
                                 output_names=[f"out{i}" for i in range(outputs)])
        _nhwc_pools_as_2d(proto.graph)
        self.conversion_seconds = time.perf_counter() - start
        return proto.SerializeToString()

    def _save(self, graph: bytes) -> None:
        from layerkit._atomic import atomic_write

        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.cache_path, graph)
        except OSError as err:  # a read-only run folder: the next process converts again
            print(f"layerkit: could not cache the converted graph in {self.cache_path}: {err}", file=sys.stderr)
            self.cache_path = None

    def _bind(self, values=None):
        """An ONNX Runtime session of the graph with `values` (default: the model's) as its weights."""
        import onnx
        import onnxruntime
        from onnx import numpy_helper

        values = self._flat_values() if values is None else values
        proto = onnx.load_from_string(self._graph)
        weights = {f"w{i}": v for i, v in enumerate(values)}
        kept = [i for i in proto.graph.input if i.name not in weights]
        bound = [i.name for i in proto.graph.input if i.name in weights]
        del proto.graph.input[:]
        proto.graph.input.extend(kept)
        proto.graph.initializer.extend(numpy_helper.from_array(np.asarray(weights[n]), n) for n in bound)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        self._session = onnxruntime.InferenceSession(proto.SerializeToString(), options,
                                                     providers=["CPUExecutionProvider"])
        self._bound = values


def _inference_model(model):
    """`layerkit.export.inference_model(model)`, made once per model: it calls the layers anew,
    and a model whose layers were called twice is no longer a chain it can strip."""
    from layerkit.export import inference_model

    try:
        return _INFERENCE[model]
    except (KeyError, TypeError):
        pass
    stripped = inference_model(model)
    try:
        _INFERENCE[model] = stripped
    except TypeError:
        pass
    return stripped


# === Classifier outputs ===


def probabilities(outputs, from_logits: bool) -> np.ndarray:
    """Class probabilities (float64) from a `Forward`'s outputs: a softmax of logits on the
    host where `from_logits`, else the outputs as they are."""
    outputs = np.asarray(outputs, "float64")
    return np.exp(log_probabilities(outputs, from_logits)) if from_logits else outputs


def log_probabilities(outputs, from_logits: bool) -> np.ndarray:
    """log-probabilities (float64): log-softmax of logits, or the log of probabilities (floored
    at 1e-30, so a saturated softmax still ranks)."""
    outputs = np.asarray(outputs, "float64")
    if not from_logits:
        return np.log(np.maximum(outputs, 1e-30))
    shifted = outputs - outputs.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def _final_softmax(model):
    """The layer whose softmax makes `model`'s single output (in nested functional models too),
    or None."""
    import keras

    for _ in range(32):
        outputs = getattr(model, "outputs", None)
        if not outputs or len(outputs) != 1:
            return None
        history = getattr(outputs[0], "_keras_history", None)
        layer = history.operation if history is not None else None
        if isinstance(layer, keras.Model):
            model = layer
            continue
        if layer is not None and getattr(layer, "activation", None) is keras.activations.softmax:
            return layer
        return None
    return None


class _without_softmax:
    """Within the block, `layer`'s softmax is the identity (a trace gives its input)."""

    def __init__(self, layer):
        self.layer = layer

    def __enter__(self):
        if self.layer is not None:
            import keras

            self.layer.activation = keras.activations.linear

    def __exit__(self, *exc):
        if self.layer is not None:
            import keras

            self.layer.activation = keras.activations.softmax


# === Estimates ===


def equations(jaxpr) -> int:
    """Equations of a (closed) jaxpr, those of the jaxprs inside it counted in."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    n = 0
    for eqn in jaxpr.eqns:
        inner = list(_subjaxprs(eqn))
        n += sum(equations(j) for j in inner) if inner else 1
    return n


def flops(jaxpr) -> float:
    """Floating-point operations of the convolutions and matrix products of a jaxpr (2 per
    multiply-add), for its batch."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "conv_general_dilated":
            out, rhs = eqn.outvars[0].aval.shape, eqn.invars[1].aval.shape
            features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
            total += 2.0 * math.prod(out) * math.prod(rhs) / max(1, features)
        elif name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)
        else:
            repeat = eqn.params.get("length", 1) if name == "scan" else 1
            total += repeat * sum(flops(j) for j in _subjaxprs(eqn))
    return total


def _subjaxprs(eqn):
    for value in eqn.params.values():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if hasattr(item, "eqns") or hasattr(getattr(item, "jaxpr", None), "eqns"):
                yield item


def estimate_conversion_seconds(eqns: int) -> float:
    """Estimated jax2onnx conversion time of a jaxpr of `eqns` equations (`ESTIMATE`), plus
    loading jax2onnx's plugins where this process has not yet."""
    from layerkit.export import plugins_loaded

    seconds = (ESTIMATE["convert_s"] + ESTIMATE["convert_s_per_eqn"] * eqns
               + ESTIMATE["convert_s_per_eqn2"] * eqns ** 2)
    return seconds + (0.0 if plugins_loaded() else ESTIMATE["plugins_s"])


# === Helpers ===


def _missing(*names) -> str | None:
    """The first of `names` that cannot be imported (tests patch this to see the fallback)."""
    import importlib.util

    for name in names:
        if importlib.util.find_spec(name) is None:
            return name
    return None


def _version(package) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


def _batches(items):
    """Image batches of an iterable of arrays or (images, labels, ...) tuples; a `Pipeline`
    (any Keras `PyDataset`) by index, as Keras reads it."""
    if hasattr(items, "__getitem__") and hasattr(items, "__len__") and hasattr(items, "num_batches"):
        dataset = items
        items = (dataset[i] for i in range(len(dataset)))
    for item in items:
        yield item[0] if isinstance(item, (tuple, list)) else item


def _flatten(outputs) -> list:
    if isinstance(outputs, np.ndarray):
        return [outputs]
    import keras

    return [np.asarray(o) for o in keras.tree.flatten(outputs)]


def _first_line(err) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__
