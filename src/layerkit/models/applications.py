"""Pretrained backbones of ``keras.applications`` (Xception, ResNet50, MobileNetV3, EfficientNetB0)
with a new head, their ImageNet weights fetched through `layerkit.models.pretrained`.

The table below describes each family's no-top weights as ``keras.applications`` itself does
(same file name, URL and md5 hash), so a file Keras already downloaded into ``~/.keras/models``
is found, ``keras.utils.get_file`` fetches and checks it where a network exists, and
``--weights PATH`` (the file, or a folder holding it) works where none does. The backbone's
preprocessing is inside the model: every variant takes pixels 0..255.
"""

import functools

import keras

from layerkit.models import pretrained
from layerkit.models._common import check_rate, image_input
from layerkit.models.preprocessing import Preprocessing
from layerkit.models.registry import register

_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/"


def _load(model, path, base):
    """A keras.applications no-top file into the application inside `model`'s backbone."""
    model.get_layer(pretrained.BACKBONE).get_layer(base).load_weights(path)


def _weights(base, file_name, url, file_hash, size, preprocessing):
    return pretrained.Weights(file_name=file_name, url=url, file_hash=file_hash, input_size=size,
                              preprocessing=preprocessing, load=functools.partial(_load, base=base))


# name: (keras.applications constructor, its options, smallest input side, weights)
APPLICATIONS = {
    "xception": ("Xception", {}, 71, _weights(
        "xception", "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _KERAS + "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "b0042744bf5b25fce3cb969f33bebb97", 299, "tf")),
    "resnet50": ("ResNet50", {}, 32, _weights(
        "resnet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _KERAS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "4d473c1dd8becc155b73f8504c6f6626", 224, "caffe")),
    "mobilenetv3-large": ("MobileNetV3Large", {"include_preprocessing": True}, 32, _weights(
        "MobileNetV3Large", "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
        _KERAS + "mobilenet_v3/weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
        "07fb09a5933dd0c8eaafa16978110389", 224, "none")),
    "efficientnet-b0": ("EfficientNetB0", {}, 32, _weights(
        "efficientnetb0", "efficientnetb0_notop.h5",
        "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5",
        "50bc09e76180e00e4465e1a485ddc09d", 224, "none")),
}
WEIGHTS = {name: row[3] for name, row in APPLICATIONS.items()}


def _build(name, num_classes, input_shape, weights, include_top, pooling, dropout, classifier_activation,
           freeze_backbone, head_hidden):
    constructor, options, smallest, spec = APPLICATIONS[name]
    check_rate("dropout", dropout)
    inputs = image_input(input_shape, name="pixels")
    if min(input_shape[:2]) < smallest or input_shape[2] != 3:
        raise ValueError(f"{name} needs RGB input of at least {smallest}x{smallest}. "
                         f"Received: input_shape={tuple(input_shape)}")
    # === Layers ===
    x = inputs if spec.preprocessing == "none" else Preprocessing(spec.preprocessing, name="preprocess")(inputs)
    base = getattr(keras.applications, constructor)(include_top=False, weights=None,
                                                    input_shape=tuple(input_shape), **options)
    backbone = keras.Model(inputs, base(x), name=pretrained.BACKBONE)
    # === Functional Model ===
    model = pretrained.assemble(name, backbone, num_classes, include_top, pooling, dropout,
                                classifier_activation, head_hidden)
    if weights is not None:
        pretrained.load(model, name, spec, weights)
    if freeze_backbone:
        pretrained.set_backbone_trainable(model, False)
    return model


def _register(name, summary, input_shape, num_classes):
    def builder(num_classes=num_classes, input_shape=input_shape, weights=None, include_top=True, pooling="avg",
                dropout=0.0, classifier_activation="softmax", freeze_backbone=False, head_hidden=0):
        return _build(name, num_classes, input_shape, weights, include_top, pooling, dropout,
                      classifier_activation, freeze_backbone, head_hidden)

    builder.__doc__ = summary + """

    Takes pixels 0..255 (the backbone's preprocessing is inside). ``weights``: None (random),
    ``"imagenet"`` (the weights cache, else downloaded by ``keras.utils.get_file``, hash checked)
    or the path of the no-top file or a folder holding it. ``include_top``/``pooling`` as in
    ``keras.applications``, with a new ``num_classes`` head; ``freeze_backbone``: the backbone
    does not train, BatchNorm in inference mode."""
    builder.__name__ = name.replace("-", "_")
    register(name)(builder)


_register("xception", "Xception (keras.applications) + global pooling + a new head; ImageNet weights by download or a local file.",
          (192, 192, 3), 5)
_register("resnet50", "ResNet50 v1 (keras.applications) + a new head; ImageNet weights by download or a local file.",
          (224, 224, 3), 1000)
_register("mobilenetv3-large", "MobileNetV3-Large (keras.applications) + a new head; ImageNet weights by download or a local file.",
          (224, 224, 3), 1000)
_register("efficientnet-b0", "EfficientNetB0 (keras.applications) + a new head; ImageNet weights by download or a local file.",
          (224, 224, 3), 1000)
