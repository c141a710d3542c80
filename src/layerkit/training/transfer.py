"""Transfer learning in a run: a frozen pretrained backbone, its features computed once, and an
optional second phase that fine-tunes the backbone (the Keras guide "Transfer learning &
fine-tuning").

Phase 1 (epochs before ``unfreeze_at``, or all): the backbone is frozen (BatchNorm in inference
mode) and only the head learns. When nothing random runs before the backbone (``augment=none``)
its output for an image is the same every epoch, so with ``features=auto`` it is computed once
per image (train, validation) through the run's forward-pass function, and the head (the layers
after the pooled ``features``: dropout, hidden layer, classifier, the very same layer objects)
trains on those vectors: an epoch then costs a few milliseconds instead of a backbone pass.
Checkpoints still hold the whole model (pixels in), so ``evaluate``, ``predict``, ``export`` and
``--resume`` see an ordinary run.

Phase 2 (``unfreeze_at`` <= epoch): every backbone layer but BatchNorm trains, from the pixels,
at ``unfreeze_lr`` with the run's schedule restarted over the remaining epochs.
"""

import dataclasses

import keras
import numpy as np

from layerkit.data.pipeline import Pipeline
from layerkit.models import pretrained


def pretrained_net(model):
    """The pretrained zoo model inside a run model, or a ValueError naming what is needed."""
    net = pretrained.find_pretrained(model)
    if net is None:
        raise ValueError("freeze_backbone/unfreeze_at need a pretrained zoo model (one holding a "
                         f"'{pretrained.BACKBONE}' and '{pretrained.FEATURES}' layers, e.g. efficientnet-lite0); "
                         f"{model.name} is not one")
    return net


def uses_features(config, process_count: int) -> bool:
    """Whether phase 1 trains the head on features computed once (see the module docstring)."""
    return (config.freeze_backbone and config.features == "auto" and config.augment == "none"
            and process_count == 1 and not config.ema)


def phases(config, initial_epoch: int) -> list[tuple[int, int, bool]]:
    """(first epoch, end epoch, backbone trains) of each phase still to run."""
    if not config.unfreeze_at:
        return [(initial_epoch, config.epochs, False)] if initial_epoch < config.epochs else []
    spans = [(0, config.unfreeze_at, False), (config.unfreeze_at, config.epochs, True)]
    return [(max(a, initial_epoch), b, t) for a, b, t in spans if b > initial_epoch]


def phase_config(config, unfrozen: bool):
    """The config that makes phase 2's schedule: ``unfreeze_lr`` over the epochs after ``unfreeze_at``."""
    if not unfrozen:
        return config
    # a config of one phase (no unfreezing within it): every Config is validated when it is made
    return dataclasses.replace(config, lr=config.unfreeze_lr, epochs=config.epochs - config.unfreeze_at,
                               warmup_epochs=0.0, start_lr=0.0, min_lr=min(config.min_lr, config.unfreeze_lr),
                               step_epochs=(), unfreeze_at=0)


def unfreeze(model) -> None:
    pretrained.set_backbone_trainable(pretrained_net(model), True)


def split(model):
    """(extractor, head) sharing `model`'s layers: pixels -> pooled features, features -> output.
    `model` is a run model: a chain of layers (augmentation, normalisation) then the zoo model."""
    net = pretrained_net(model)
    inputs = keras.Input(model.input_shape[1:], name="pixels")
    x = inputs
    for layer in model.layers[1:]:
        if layer is net:
            break
        x = layer(x)
    features = keras.Model(net.inputs, net.get_layer(pretrained.FEATURES).output, name="features")
    extractor = keras.Model(inputs, features(x), name="extractor")
    head_in = keras.Input(features.output_shape[1:], name="features")
    h = head_in
    after = False
    for layer in net.layers:
        if after:
            h = layer(h)
        after = after or layer.name == pretrained.FEATURES
    return extractor, keras.Model(head_in, h, name="head")


def compute_features(forward, pipe) -> np.ndarray:
    """The features of every image of `pipe`, in order, through `forward` (a
    `layerkit.forward.Forward` of the backbone: the one forward-pass function that evaluation
    and predict use)."""
    return np.asarray(forward(pipe), dtype="float32")


def ordered(pipe) -> Pipeline:
    """`pipe`'s images once each, in order, none dropped, decoded batch by batch."""
    return Pipeline(pipe.source, pipe.batch_size, shuffle=False, drop_remainder=False,
                    image_size=pipe.image_size, cache_decoded=False)


class FeatureBatches(keras.utils.PyDataset):
    """(features, labels) batches of a fixed size, a new seeded permutation each epoch; the last
    partial batch is dropped (as the training pipeline does, so the steps per epoch agree)."""

    def __init__(self, features, labels, batch_size, seed, epoch=0):
        super().__init__()
        self.features, self.labels = features, np.asarray(labels, "int32")
        self.batch_size, self.seed, self.epoch = batch_size, seed, epoch
        self._order = self._permutation()

    def _permutation(self):
        return np.random.default_rng([self.seed, 5, self.epoch]).permutation(len(self.labels))

    def __len__(self):
        return len(self.labels) // self.batch_size

    def __getitem__(self, i):
        idx = self._order[i * self.batch_size:(i + 1) * self.batch_size]
        return self.features[idx], self.labels[idx]

    def on_epoch_end(self):
        self.epoch += 1
        self._order = self._permutation()


def save_whole_model(checkpoints, model) -> None:
    """Make `checkpoints` (a Keras callback) save `model` whatever model `fit` hands it (the head)."""
    type_ = type(checkpoints)
    checkpoints.set_model = lambda _fitted: type_.set_model(checkpoints, model)
