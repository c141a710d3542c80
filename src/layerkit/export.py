"""Export a run's checkpoint for inference: ONNX (TensorFlow-free), SavedModel, or a clean `.keras`.

    layerkit export runs/sample-… --format onnx          # -> runs/sample-…/best.onnx

Every format takes the model's own input, pixels 0..255 as float32 (batch, H, W, C), and gives
its class probabilities; the augmentation layers (identity at inference) are dropped first.
Decode JPEGs for it as training did: layerkit's pixels are TensorFlow's
``decode_jpeg(dct_method="INTEGER_ACCURATE")``; TensorFlow's default DCT gives pixels up to 5-6
levels off (measured: docs/pipeline.md, "JPEG pixels, and TensorFlow's"), a train/serve skew.

- ``onnx``: the inference function traced by JAX and converted by jax2onnx
  (``pip install 'layerkit[onnx]'``); no TensorFlow. A layer jax2onnx cannot convert is named.
- ``saved_model``: `keras.Model.export` (needs TensorFlow: ``pip install tensorflow``).
- ``keras``: a `.keras` file without optimizer or augmentation, loadable with `layerkit.load_model`.
"""

import json
from pathlib import Path

import keras
import numpy as np

from layerkit._atomic import atomic_save, atomic_write
from layerkit.saving import load_model

FORMATS = ("onnx", "saved_model", "keras")
SUFFIX = {"onnx": ".onnx", "saved_model": "_saved_model", "keras": "-inference.keras"}
# Keras's random preprocessing layers (RandomFlip, RandomSaturation, ...) and layerkit's:
# each is the identity at inference.
AUGMENTATION_PREFIX = "Random"
AUGMENTATION_TYPES = ("Cutout", "AlternatingFlip")


class ExportError(ValueError):
    """A model that cannot be exported in the asked format, or a missing exporter."""


def checkpoint_path(run_dir, weights: str = "best") -> Path:
    run_dir = Path(run_dir)
    if weights not in ("best", "last"):
        raise ValueError(f"weights must be 'best' or 'last'. Received: {weights!r}")
    if not (run_dir / "config.json").exists():
        raise ValueError(f"{run_dir} is not a layerkit run directory (no config.json)")
    path = run_dir / f"{weights}.keras"
    if not path.exists():
        raise ValueError(f"{run_dir} has no {weights} checkpoint ({path.name}); has an epoch finished?")
    return path


def export_run(run_dir, fmt: str, out=None, weights: str = "best") -> Path:
    """Export `run_dir`'s `weights` checkpoint as `fmt` to `out` (default: beside it). Returns `out`."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}. Received: {fmt!r}")
    source = checkpoint_path(run_dir, weights)
    out = Path(out) if out else source.with_name(source.stem + SUFFIX[fmt])
    if fmt == "saved_model":
        _tensorflow()  # refused before the checkpoint is loaded
    elif fmt == "onnx":
        _jax2onnx()
    model = inference_model(load_model(source, compile=False))
    if fmt == "onnx":
        classes = Path(run_dir) / "classes.json"
        to_onnx(model, out, json.loads(classes.read_text()) if classes.exists() else None)
    elif fmt == "saved_model":
        to_saved_model(model, out)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(out, model.save, ".keras")
    return out


def is_augmentation(layer) -> bool:
    name = type(layer).__name__
    return name.startswith(AUGMENTATION_PREFIX) or name in AUGMENTATION_TYPES


def inference_model(model: keras.Model) -> keras.Model:
    """`model` without its augmentation layers (a chain of layers at the top level; else unchanged)."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if not any(is_augmentation(layer) for layer in layers) or not _is_chain(model):
        return model
    inputs = keras.Input(model.input_shape[1:], name=model.inputs[0].name, dtype=model.inputs[0].dtype)
    x = inputs
    for layer in layers:
        if not is_augmentation(layer):
            x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def _is_chain(model) -> bool:
    try:
        layers = model.layers
        return (len(model.inputs) == 1 and len(model.outputs) == 1
                and all(len(layer._inbound_nodes) == 1 for layer in layers))
    except AttributeError:  # a subclassed model
        return False


def _inference_fn(model):
    import jax

    trainable = [v.value for v in model.trainable_variables]
    frozen = [v.value for v in model.non_trainable_variables]

    def fn(x):
        y, _ = model.stateless_call(trainable, frozen, x, training=False)
        return y

    return jax.jit(fn)


def _jax2onnx():
    if keras.backend.backend() != "jax":
        raise ExportError(f"ONNX export traces the model with JAX; KERAS_BACKEND is {keras.backend.backend()!r}")
    try:
        import jax2onnx
    except ImportError:
        raise ExportError("ONNX export needs jax2onnx: pip install 'layerkit[onnx]' "
                          "(or pip install jax2onnx onnxruntime)") from None
    _load_jax_plugins()
    return jax2onnx


_plugins = []


def plugins_loaded() -> bool:
    return bool(_plugins)


def _load_jax_plugins() -> None:
    """Load only jax2onnx's plugins for JAX's own primitives, once a process.

    A first conversion imports every module under ``jax2onnx/plugins``: besides JAX's
    primitives, its Flax, Equinox and example trees, whose imports build example models and
    compile some 70 XLA programs (35-40 s on 2 busy cores, 2026-12). A Keras model on JAX
    traces to JAX primitives alone, and the graphs are the same node for node (every zoo model
    checked): the JAX tree loads in about 4 s. Where jax2onnx's layout differs (not 0.17), it
    loads its plugins as usual."""
    if _plugins:
        return
    try:
        from jax2onnx.plugins import plugin_system
    except ImportError:
        return
    root = Path(plugin_system.__file__).parent / "jax"
    if root.is_dir() and hasattr(plugin_system, "_import_tree") and \
            hasattr(plugin_system, "_already_imported_plugins") and not plugin_system._already_imported_plugins:
        plugin_system._import_tree(root, "jax2onnx.plugins.jax")
        plugin_system._already_imported_plugins = True
    _plugins.append(True)


def to_onnx(model: keras.Model, out, classes=None) -> Path:
    """Write `model` (float32 pixels in, a dynamic batch) as ONNX to `out`; `classes`: the class
    names, kept in the file's metadata as ``classes`` (a JSON list, output column order)."""
    jax2onnx = _jax2onnx()
    shape = ("B", *model.input_shape[1:])
    fn = _inference_fn(model)
    try:
        proto = jax2onnx.to_onnx(fn, inputs=[shape], model_name=model.name,
                                 input_names=["pixels"], output_names=onnx_output_names(model, fn))
    except Exception as err:  # jax2onnx raises several kinds for an unsupported primitive
        layer = _first_unconvertible(model, jax2onnx)
        where = f"layer '{layer}'" if layer else "the model"
        raise ExportError(f"jax2onnx cannot convert {where} of {model.name}: {type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''} (use --format keras or saved_model)") from err
    _nhwc_pools_as_2d(proto.graph)
    if classes is not None:
        entry = proto.metadata_props.add()
        entry.key, entry.value = "classes", json.dumps(list(classes))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, proto.SerializeToString())
    return out


def onnx_output_names(model, fn=None) -> list[str]:
    """One name per output, in the order the traced function returns them (JAX's pytree order:
    a dict's keys sorted): "probabilities" for a classifier's one output, else each output's
    key (a dict of outputs, e.g. alphazero's policy and value) or its layer's name."""
    import jax

    fn = fn or _inference_fn(model)
    spec = jax.ShapeDtypeStruct((1, *model.input_shape[1:]), "float32")
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(jax.eval_shape(fn, spec))[0]]
    if len(paths) == 1:
        return ["probabilities"]
    names = []
    for k, path in enumerate(paths):
        last = path[-1] if path else None
        if isinstance(last, jax.tree_util.DictKey):
            names.append(str(last.key))
        elif isinstance(last, jax.tree_util.SequenceKey) and len(model.output_names) == len(paths):
            names.append(model.output_names[last.idx])
        else:
            names.append(f"output_{k}")
    return names


def _nhwc_pools_as_2d(graph) -> int:
    """Rewrite jax2onnx's NHWC max-pool, ``Unsqueeze, Unsqueeze, MaxPool(kernel [1, kh, kw, 1]),
    Squeeze`` (a 4-D pool ONNX Runtime refuses: "Unsupported pooling size"), as ``Transpose to
    NCHW, MaxPool(kernel [kh, kw]), Transpose back``. Returns how many it rewrote."""
    from onnx import helper

    producer = {o: n for n in graph.node for o in n.output}
    consumers = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    rewritten = 0
    for pool in [n for n in graph.node if n.op_type == "MaxPool"]:
        attrs = {a.name: helper.get_attribute_value(a) for a in pool.attribute}
        kernel = list(attrs.get("kernel_shape", ()))
        inner = producer.get(pool.input[0])
        outer = producer.get(inner.input[0]) if inner is not None and inner.op_type == "Unsqueeze" else None
        after = consumers.get(pool.output[0], [])
        if (len(kernel) != 4 or kernel[0] != 1 or kernel[3] != 1 or outer is None or outer.op_type != "Unsqueeze"
                or len(after) != 1 or after[0].op_type != "Squeeze" or len(pool.output) != 1
                or len(consumers.get(inner.output[0], [])) != 1 or len(consumers.get(outer.output[0], [])) != 1):
            continue
        squeeze, name = after[0], pool.name or pool.output[0]
        new = {"kernel_shape": kernel[1:3]}
        if "strides" in attrs:
            new["strides"] = list(attrs["strides"])[1:3]
        if "dilations" in attrs:
            new["dilations"] = list(attrs["dilations"])[1:3]
        if "pads" in attrs:
            pads = list(attrs["pads"])
            new["pads"] = pads[1:3] + pads[5:7]
        if "ceil_mode" in attrs:
            new["ceil_mode"] = attrs["ceil_mode"]
        nodes = [
            helper.make_node("Transpose", [outer.input[0]], [name + "_nchw"], perm=[0, 3, 1, 2], name=name + "_to_nchw"),
            helper.make_node("MaxPool", [name + "_nchw"], [name + "_pooled"], name=name + "_2d", **new),
            helper.make_node("Transpose", [name + "_pooled"], [squeeze.output[0]], perm=[0, 2, 3, 1], name=name + "_to_nhwc"),
        ]
        at = list(graph.node).index(outer)
        for old in (outer, inner, pool, squeeze):
            graph.node.remove(old)
        for k, node in enumerate(nodes):
            graph.node.insert(at + k, node)
        rewritten += 1
    return rewritten


def _first_unconvertible(model, jax2onnx, prefix=""):
    """The path of the first (innermost) layer of `model` that jax2onnx cannot convert alone."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            inner = _first_unconvertible(layer, jax2onnx, f"{prefix}{layer.name}/")
            if inner:
                return inner
            continue
        try:
            specs = keras.tree.flatten(layer.input)
            shapes = [(1, *t.shape[1:]) for t in specs]
            trainable = [v.value for v in layer.trainable_variables]
            frozen = [v.value for v in layer.non_trainable_variables]

            def fn(*xs, layer=layer, specs=layer.input, trainable=trainable, frozen=frozen):
                y, _ = layer.stateless_call(trainable, frozen, keras.tree.pack_sequence_as(specs, list(xs)),
                                            training=False)
                return y

            jax2onnx.to_onnx(fn, inputs=shapes)
        except Exception:  # noqa: BLE001 - any failure names this layer
            return f"{prefix}{layer.name}" + f" ({type(layer).__name__})"
    return None


def _tensorflow():
    try:
        import tensorflow
    except ImportError:
        raise ExportError("SavedModel export needs TensorFlow, which is not installed: pip install tensorflow "
                          "(or use --format onnx or keras)") from None
    return tensorflow


def to_saved_model(model: keras.Model, out) -> Path:
    _tensorflow()
    model.export(str(out), format="tf_saved_model")
    return Path(out)


def onnx_outputs(path, x) -> np.ndarray:
    """Run the ONNX file at `path` on `x` with onnxruntime (for checks)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: np.asarray(x, "float32")})[0]
