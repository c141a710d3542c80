"""The data of a run: train / validation / test pipelines made from a `Config`."""

from dataclasses import dataclass

import keras
import numpy as np

from layerkit.data.check import apply_policy
from layerkit.data.pipeline import Pipeline
from layerkit.data.sources import Subset, has_split, open_dataset, open_source


@dataclass
class RunData:
    train: Pipeline
    validation: Pipeline
    test: Pipeline
    classes: tuple
    image_shape: tuple
    validation_name: str  # "validation (N images held out of train)" or "none"
    splits: dict  # where each split's images came from, for the run record


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


DEVICES = {"auto": "auto", "yes": True, "no": None}  # Config.data_on_device -> Pipeline(device=)


def stratified_split(labels, fraction: float, seed) -> tuple:
    """(held, kept): index arrays, `fraction` of each class held out at random (seeded), at
    least one image of every class with two or more on each side."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(fraction * len(idx)))
        k = min(max(k, 1), len(idx) - 1) if len(idx) >= 2 else 0
        held.append(idx[:k])
    held = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    kept = np.setdiff1d(np.arange(len(labels)), held)
    return held, kept


def _limit(source, limit, seed):
    if limit and limit < len(source):
        keep = np.sort(np.random.default_rng(seed).permutation(len(source))[:limit])
        return Subset(source, keep)
    return source


def load_data(config, process_index: int = 0, process_count: int = 1) -> RunData:
    """The run's pipelines; no image is in two of train, validation and test.

    Test: `config.test_data`, else the data's own test split, else a stratified, seeded
    `test_split` of the data carved out first. Validation (which picks the best epoch):
    a stratified, seeded `validation` fraction of what remains for training, or none.
    ``RunData.splits`` says where each came from, for the run record.

    Every image is read and decoded once first (`layerkit.data.check`): `config.on_bad_image`
    ``error`` names every bad one and stops, ``skip`` leaves them out and records how many in
    ``splits["skipped"]``; images of different sizes need `config.image_size`.

    With several processes, each reads its own slice of every training epoch,
    ``batch_size / process_count`` images a step; evaluation splits are read whole by every
    process (the same batch on each, so the metrics are those of one process)."""
    data_dir = config.data_dir or None
    keys = config.data_keys or None
    size = (config.image_size, config.image_size) if config.image_size else None
    skipped = []

    def checked(source, what):
        source, check = apply_policy(source, config.on_bad_image, size, what)
        skipped.extend(check.bad)
        return source

    pool = checked(open_dataset(config.data, "train", data_dir, keys=keys), config.data)
    if config.test_data:
        test_src = checked(open_source(config.test_data, "test", keys=keys), config.test_data)
        test_from = f"the test data {config.test_data}"
        train_src = pool
    elif has_split(config.data, "test", data_dir):
        test_src = checked(open_dataset(config.data, "test", data_dir, keys=keys), f"{config.data} (test)")
        test_from = f"the test split of {config.data}"
        train_src = pool
    else:
        held, kept = stratified_split(pool.labels, config.test_split, [config.seed, 4])
        if not len(held) or not len(kept):
            raise ValueError(f"{config.data} has {len(pool)} images: too few to carve out a test split "
                             f"(test_split={config.test_split}); pass --test-data PATH")
        test_src, train_src = Subset(pool, held), Subset(pool, kept)
        test_from = (f"carved out of {config.data}: {config.test_split:g} of each class "
                     f"(stratified, seed {config.seed}); never trained on")
    if tuple(train_src.classes) != tuple(test_src.classes):
        raise ValueError(f"the training and test data name different classes: "
                         f"{tuple(train_src.classes)} vs {tuple(test_src.classes)}")
    val_src = None
    order = np.arange(len(train_src))
    if config.validation:
        held, order = stratified_split(train_src.labels, config.validation, [config.seed, 1])
        if not len(held) or not len(order):
            raise ValueError(f"validation={config.validation} of {len(train_src)} training images leaves no "
                             "validation or no training images")
        val_src = _limit(Subset(train_src, held), config.test_limit, [config.seed, 3])
    if config.train_limit:
        order = np.sort(np.random.default_rng([config.seed, 1]).permutation(order)[: config.train_limit])
    train = Subset(train_src, order)
    test_src = _limit(test_src, config.test_limit, [config.seed, 2])

    batch = config.batch_size // process_count

    def pipe(source, shuffle, device=None):
        shard = dict(process_index=process_index, process_count=process_count) if shuffle else {}
        return Pipeline(source, batch, shuffle=shuffle, seed=config.seed,
                        drop_remainder=shuffle, image_size=size, device=device, **shard)

    try:  # data_on_device: auto (a GPU or TPU, and the decoded split fits the cache), yes, no
        train_pipe = pipe(train, True, DEVICES[config.data_on_device])
    except ValueError as err:
        if config.data_on_device != "yes" or "device" not in str(err):
            raise
        raise ValueError(f"data_on_device=yes: {err}; use data_on_device=no (the pipeline then decodes "
                         "every epoch)") from None
    test_pipe = pipe(test_src, False)
    val_pipe = pipe(val_src, False) if val_src is not None else None
    splits = {
        "train": {"images": len(train), "from": f"{config.data}, less the validation and any carved test images"},
        "validation": ({"images": len(val_src), "from": f"held out of the training images: {config.validation:g} "
                        f"of each class (stratified, seed {config.seed}); picks the best epoch"}
                       if val_src is not None else {"images": 0, "from": "none (validation=0): no best epoch is chosen"}),
        "test": {"images": len(test_src), "from": test_from},
    }
    if skipped:
        splits["skipped"] = {"images": len(skipped), "from": "on_bad_image=skip: images that do not read or "
                             "decode, left out before splitting (the first listed in 'files')",
                             "files": [f"{where}: {why}" for _, where, why in skipped[:20]]}
    name = f"validation ({len(val_src)} images held out of train)" if val_src is not None else "none"
    return RunData(train_pipe, val_pipe, test_pipe, tuple(train_src.classes),
                   tuple(train_pipe.image_shape), name, splits)
