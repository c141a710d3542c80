"""The data of a run: train / validation / test pipelines made from a `Config`."""

import dataclasses
import os
from dataclasses import dataclass

import keras
import numpy as np

from layerkit.data.check import DataProblemsError, check_images
from layerkit.data.pipeline import Pipeline
from layerkit.data.scan import ClassFolderError
from layerkit.data.sources import NAMED, FolderSource, Subset, has_split, open_dataset, open_source
from layerkit.training import fit


@dataclass
class RunData:
    train: Pipeline
    validation: Pipeline
    test: Pipeline
    classes: tuple
    image_shape: tuple
    validation_name: str  # "validation (N images held out of train)" or "none"
    splits: dict  # where each split's images came from (and the data's path), for the run record
    config: object = None  # the run's Config with the keys fitted to the data resolved (`layerkit.training.fit`)
    notes: list = dataclasses.field(default_factory=list)  # what was found and chosen, for the run's first lines


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


def _open(open_fn, problems, fixes):
    """The source `open_fn` opens; empty or unreadable class folders become problems and the
    rest of the folder is used, so every problem is found in the one pass."""
    try:
        return open_fn()
    except ClassFolderError as err:
        problems.append("\n".join(f"{where}: {why}" for where, why in err.problems))
        fixes.append("add images to an empty class folder or remove it; remove or repair a broken link")
        return FolderSource(err.found) if len(err.found.files) else None


def _where(config, source) -> str:
    """The data's absolute path (the embedded sample's file inside the package)."""
    if config.data == "sample":
        from importlib import resources

        return str(resources.files("layerkit.data") / "embedded" / "cifar10-train.npz")
    name = getattr(source, "name", config.data)
    path = name.rsplit(" (", 1)[0]  # CIFAR-10 batches: "PATH (train)"
    return os.path.abspath(path) + name[len(path):] if os.path.exists(path) else name


def load_data(config, process_index: int = 0, process_count: int = 1, devices: int = 1) -> RunData:
    """The run's pipelines; no image is in two of train, validation and test.

    Test: `config.test_data`, else the data's own test split, else a stratified, seeded
    `test_split` of the data carved out first. Validation (which picks the best epoch):
    a stratified, seeded `validation` fraction of what remains for training, or none (also
    when no class has two training images to split, which it says). ``RunData.splits`` says
    where each came from, for the run record.

    One pass finds every problem before anything trains: every image is read and decoded once
    (`layerkit.data.check`), and empty or unreadable class folders, bad images
    (`config.on_bad_image` ``error``; ``skip`` leaves them out and records how many in
    ``splits["skipped"]``), classes with too few images and a batch larger than the training
    split are all named in one `DataProblemsError`, each with a fix that works. ``image_size=0``,
    ``batch_size=0`` and ``model=auto`` are fitted to the data (`layerkit.training.fit`);
    ``RunData.config`` is the config with them resolved (and a path `data` made absolute), and
    ``RunData.notes`` says what was chosen.

    With several processes, each reads its own slice of every training epoch,
    ``batch_size / process_count`` images a step; evaluation splits are read whole by every
    process (the same batch on each, so the metrics are those of one process)."""
    data_dir = config.data_dir or None
    keys = config.data_keys or None
    problems, fixes, notes, skipped, sizes = [], [], [], [], []

    def checked(source, what):
        if source is None:
            return None
        check = check_images(source)
        if check.bad and config.on_bad_image == "error":
            problems.append(f"{len(check.bad)} of {len(source)} images of {what} cannot be used:\n"
                            + check.report().replace("\n  ", "\n").strip())
            fixes.append("fix or remove them, or leave them out with on_bad_image=skip")
        skipped.extend(check.bad)
        good = check.good()
        if not len(good) and config.on_bad_image == "skip":
            problems.append(f"none of the {len(source)} images of {what} can be used:\n"
                            + check.report().replace("\n  ", "\n").strip())
            fixes.append("replace them with images that read and decode")
        sizes.append(check.sizes[good])
        return Subset(source, good) if check.bad else source

    pool = checked(_open(lambda: open_dataset(config.data, "train", data_dir, keys=keys), problems, fixes),
                   config.data)
    carve = False
    if config.test_data:
        test_src = checked(_open(lambda: open_source(config.test_data, "test", keys=keys), problems, fixes),
                           config.test_data)
        test_from = f"the test data {config.test_data}"
    elif has_split(config.data, "test", data_dir):
        test_src = checked(_open(lambda: open_dataset(config.data, "test", data_dir, keys=keys), problems, fixes),
                           f"{config.data} (test)")
        test_from = f"the test split of {config.data}"
    else:
        carve, test_src = True, None
    if pool is not None and carve:
        counts = np.bincount(pool.labels, minlength=len(pool.classes))
        few = [f"{pool.classes[c]!r} ({counts[c]})" for c in np.flatnonzero(counts < 2)]
        if few:
            problems.append(f"class{'es' if len(few) > 1 else ''} {', '.join(few)} of {config.data} "
                            f"{'have' if len(few) > 1 else 'has'} fewer than 2 usable images: a class needs "
                            "one to train on and one carved out to test on")
            fixes.append("add images to those classes (or remove their folders), or pass --test-data PATH "
                         "(a folder of the same classes)")
    if pool is not None and test_src is not None and tuple(pool.classes) != tuple(test_src.classes):
        problems.append(f"the training and test data name different classes: "
                        f"{tuple(pool.classes)} vs {tuple(test_src.classes)}")
        fixes.append("give the test data the same class folders as the training data")
    if pool is None or (test_src is None and not carve) or not len(pool) or (test_src is not None and not len(test_src)):
        # nothing to split or test on: say what was found so far
        raise DataProblemsError(config.data, problems, fixes, skipped)

    resolved = {}
    if os.path.exists(config.data) and config.data not in NAMED:
        resolved["data"] = os.path.abspath(config.data)
    if config.test_data and os.path.exists(config.test_data):
        resolved["test_data"] = os.path.abspath(config.test_data)
    side, size = config.image_size, (config.image_size,) * 2 if config.image_size else None
    if not side:
        found = np.concatenate(sizes)
        side, why = fit.image_size(found)
        notes.append(f"image_size={side or 0} ({why}; set image_size=N to choose)")
        resolved["image_size"] = side or 0
        as_stored = side is None or {tuple(s) for s in found.tolist()} == {(side, side)}
        size = None if as_stored else (side, side)  # as stored: decoded as they are, nothing resized

    if carve:
        held, kept = stratified_split(pool.labels, config.test_split, [config.seed, 4])
        test_src, train_src = Subset(pool, held), Subset(pool, kept)
        test_from = (f"carved out of {config.data}: {config.test_split:g} of each class "
                     f"(stratified, seed {config.seed}); never trained on")
    else:
        train_src = pool
    val_src = None
    order = np.arange(len(train_src))
    no_validation = "none (validation=0): no best epoch is chosen"
    if config.validation:
        held, kept = stratified_split(train_src.labels, config.validation, [config.seed, 1])
        if len(held):
            order = kept
            val_src = _limit(Subset(train_src, held), config.test_limit, [config.seed, 3])
        else:
            no_validation = (f"none: validation={config.validation:g} found no class with 2 training images "
                             "to split; the last epoch's weights are the run's")
            notes.append(f"validation: none (no class of the {len(train_src)} training images has 2 to split; "
                         "add images for a best-epoch choice)")
    if config.train_limit:
        order = np.sort(np.random.default_rng([config.seed, 1]).permutation(order)[: config.train_limit])
    train = Subset(train_src, order)
    test_images = len(test_src)
    test_src = _limit(test_src, config.test_limit, [config.seed, 2])

    batch_size = config.batch_size
    if not batch_size:
        batch_size, why = fit.batch_size(len(train), devices)
        notes.append(f"batch_size={batch_size} ({why}; pass --batch-size B to choose)")
        resolved["batch_size"] = batch_size
    elif len(train) // process_count < batch_size // process_count:
        fitted, _ = fit.batch_size(len(train), devices)
        problems.append(f"batch_size={batch_size}: the {len(train)} training images make no full batch")
        fixes.append(f"pass --batch-size {fitted} (or batch_size=0: fitted to the data)")
    if config.model == "auto":
        name, options, why = fit.model(len(train))
        notes.append(f"model={name} model_options.widths={options['widths']} ({why}; pass --model M to choose)")
        resolved.update(model=name, model_options={**options, **config.model_options})
    if problems:
        raise DataProblemsError(config.data, problems, fixes, skipped)
    config = dataclasses.replace(config, **resolved)

    batch = batch_size // process_count

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
    limits = "".join(f", {k}={getattr(config, k)}" for k in ("train_limit", "test_limit") if getattr(config, k))
    splits = {
        "data": {"path": _where(config, pool), "images": len(pool) + (0 if carve else test_images),
                 "classes": len(pool.classes),
                 **{k: getattr(config, k) for k in ("train_limit", "test_limit") if getattr(config, k)}},
        "train": {"images": len(train), "from": f"{config.data}, less the validation and any carved test images"
                  + (f"; train_limit={config.train_limit}" if config.train_limit else "")},
        "validation": ({"images": len(val_src), "from": f"held out of the training images: {config.validation:g} "
                        f"of each class (stratified, seed {config.seed}); picks the best epoch"
                        + (f"; test_limit={config.test_limit}" if config.test_limit else "")}
                       if val_src is not None else {"images": 0, "from": no_validation}),
        "test": {"images": len(test_src), "from": test_from
                 + (f"; test_limit={config.test_limit}" if config.test_limit else "")},
    }
    if skipped:
        splits["skipped"] = {"images": len(skipped), "from": "on_bad_image=skip: images that do not read or "
                             "decode, left out before splitting (the first listed in 'files')",
                             "files": [f"{where}: {why}" for _, where, why in skipped[:20]]}
        notes.append(f"on_bad_image=skip: {len(skipped)} image{'s' if len(skipped) > 1 else ''} left out "
                     f"(listed in results.json), e.g. {skipped[0][1]}: {skipped[0][2]}")
    notes.insert(0, f"data {splits['data']['path']}: {splits['data']['images']} images in {len(pool.classes)} "
                 f"classes; train {len(train)}, validation {len(val_src) if val_src is not None else 0}, "
                 f"test {len(test_src)} ({'carved out' if carve else 'its own'}){limits}")
    name = f"validation ({len(val_src)} images held out of train)" if val_src is not None else "none"
    return RunData(train_pipe, val_pipe, test_pipe, tuple(train_src.classes),
                   tuple(train_pipe.image_shape), name, splits, config, notes)
