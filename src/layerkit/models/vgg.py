"""The simplified VGG of the CIFAR-10 tutorial."""

import keras

from layerkit.models._common import check_rate, classifier, image_input
from layerkit.models.registry import register


@register("svgg")
def svgg(
    num_classes=10,
    input_shape=(32, 32, 3),
    widths=(64, 128, 256),
    dense_units=1024,
    dropout=0.5,
    weight_decay=0.0,
    classifier_activation="softmax",
):
    """Simplified VGG: conv pairs 64-64, 128-128, 256-256 with BN and max-pooling, Dense 1024."""
    layers = keras.layers
    check_rate("dropout", dropout)
    reg = keras.regularizers.l2(weight_decay) if weight_decay else None
    inputs = image_input(input_shape)
    x = inputs
    for stage, width in enumerate(widths):
        for j in range(2):
            x = layers.Conv2D(width, 3, padding="same", kernel_regularizer=reg,
                              kernel_initializer="he_normal", name=f"conv{stage}_{j}")(x)
            x = layers.BatchNormalization(name=f"bn{stage}_{j}")(x)
            x = layers.ReLU(name=f"relu{stage}_{j}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", kernel_regularizer=reg, name="fc")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, classifier(x, num_classes, classifier_activation), name="svgg")
