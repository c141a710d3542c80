"""The data of a run: train / validation / test pipelines made from a `Config`."""

from dataclasses import dataclass

import keras
import numpy as np

from layerkit.data.pipeline import Pipeline
from layerkit.data.sources import Subset, open_dataset


@dataclass
class RunData:
    train: Pipeline
    validation: Pipeline
    test: Pipeline
    classes: tuple
    image_shape: tuple
    validation_name: str  # "test" or "held-out N of train"


class EvenBatches(keras.utils.PyDataset):
    """A pipeline's batches padded to its full batch size, with sample weights 0 on the padding.

    A data-parallel step needs every batch to split evenly over the devices; the weights keep
    the loss and metrics those of the real images. Yields (images, labels, weights).
    """

    def __init__(self, pipe):
        super().__init__()
        self.pipe = pipe
        self.labels = pipe.labels

    def __len__(self):
        return len(self.pipe)

    def __getitem__(self, i):
        x, y = self.pipe[i]
        n, size = len(y), self.pipe.batch_size
        w = np.ones(size, "float32")
        if n < size:
            x = np.concatenate([x, np.repeat(x[-1:], size - n, axis=0)])
            y = np.concatenate([y, np.repeat(y[-1:], size - n)])
            w[n:] = 0
        return x, y, w

    def on_epoch_end(self):
        self.pipe.on_epoch_end()


def train_device(config, pipe):
    """The JAX device to keep the decoded training split on (`Config.data_on_device`), or None.

    "auto": the first local device when it is a GPU or TPU and the pipeline caches the decoded
    split (at most 1 GiB); "yes": that device whatever it is (the CPU too); "no": never.
    """
    choice = config.data_on_device
    if choice == "no":
        return None
    if keras.backend.backend() != "jax":
        if choice == "yes":
            raise ValueError(f"data_on_device=yes needs the JAX backend. Received: KERAS_BACKEND={keras.backend.backend()}")
        return None
    import jax

    device = jax.local_devices()[0]
    if choice == "auto" and (device.platform == "cpu" or not pipe.caches_decoded):
        return None
    if not pipe.caches_decoded:
        raise ValueError(f"data_on_device=yes keeps the decoded train split on {device}, but "
                         f"{len(pipe.labels)} images of {pipe.image_shape} exceed the decoded cache's "
                         "1 GiB: use data_on_device=no (the pipeline then decodes every epoch)")
    return device


def load_data(config, process_index: int = 0, process_count: int = 1) -> RunData:
    """The run's pipelines. With several processes, each reads its own slice of every training
    epoch, ``batch_size / process_count`` images a step; evaluation splits are read whole by
    every process (the same batch on each, so the metrics are those of one process)."""
    data_dir = config.data_dir or None
    train_src = open_dataset(config.data, "train", data_dir)
    test_src = open_dataset(config.data, "test", data_dir)
    if tuple(train_src.classes) != tuple(test_src.classes):
        raise ValueError(f"train and test splits of {config.data!r} name different classes: "
                         f"{train_src.classes} vs {test_src.classes}")
    rng = np.random.default_rng([config.seed, 1])
    order = rng.permutation(len(train_src))  # shuffle before splitting: the packs are sorted by class
    val_src = None
    if config.validation != "test":
        n_val = int(round(float(config.validation) * len(order)))
        if not 0 < n_val < len(order):
            raise ValueError(f"validation={config.validation} of {len(order)} images leaves no "
                             "validation or no training images")
        val_src, order = Subset(train_src, np.sort(order[:n_val])), order[n_val:]
    if config.train_limit:
        order = order[: config.train_limit]
    train = Subset(train_src, np.sort(order))
    if config.test_limit and config.test_limit < len(test_src):
        keep = np.sort(np.random.default_rng([config.seed, 2]).permutation(len(test_src))[: config.test_limit])
        test_src = Subset(test_src, keep)
    size = (config.image_size, config.image_size) if config.image_size else None

    batch = config.batch_size // process_count

    def pipe(source, shuffle):
        shard = dict(process_index=process_index, process_count=process_count) if shuffle else {}
        return Pipeline(source, batch, shuffle=shuffle, seed=config.seed,
                        drop_remainder=shuffle, image_size=size, **shard)

    train_pipe, test_pipe = pipe(train, True), pipe(test_src, False)
    train_pipe.device = train_device(config, train_pipe)
    val_pipe = pipe(val_src, False) if val_src is not None else test_pipe
    name = "test" if val_src is None else f"held-out {len(val_src)} of train (shuffled)"
    return RunData(train_pipe, val_pipe, test_pipe, tuple(train_src.classes),
                   tuple(train_pipe.image_shape), name)
