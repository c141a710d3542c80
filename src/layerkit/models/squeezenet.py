"""SqueezeNet as in the Keras flowers lab: fire modules alternating with max-pooling."""

import keras

from layerkit.blocks import Fire
from layerkit.models._common import classifier, image_input
from layerkit.models.registry import register


@register("squeezenet")
def squeezenet(
    num_classes=5,
    input_shape=(192, 192, 3),
    fires=((24, 48), (48, 96), (64, 128), (48, 96), (24, 48)),
    batch_norm=True,
    momentum=0.9,
    classifier_activation="softmax",
):
    """SqueezeNet (flowers lab): conv 32, fire modules between max-pools, global average pooling."""
    layers = keras.layers
    inputs = image_input(input_shape)
    x = inputs
    x = layers.Conv2D(32, 3, padding="same", use_bias=not batch_norm, name="stem")(x)
    if batch_norm:
        x = layers.BatchNormalization(momentum=momentum, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for i, (squeeze, expand) in enumerate(fires):
        if i:
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
        x = Fire(squeeze, expand, batch_norm=batch_norm, momentum=momentum, name=f"fire{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, classifier(x, num_classes, classifier_activation), name="squeezenet")
