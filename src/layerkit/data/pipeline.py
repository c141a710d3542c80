"""The batch-first input pipeline: a `keras.utils.PyDataset` of (uint8 NHWC, int32) batches,
composed of small pieces as big_vision composes its input pipeline::

    Sampler (indices of step s) -> Decoder (read + decode, or DecodedCache) -> batch (images, labels)
        -> Prefetcher (next steps on a background thread) -> DeviceCopy (device=, optional)

Augmentation is not done here: it runs in the model, inside the jitted step (`layerkit.augment`).

Batches are numbered by a global step ``epoch * len(self) + i``; a batch depends only on its
step, so runs are reproducible and `restore(state)` resumes exactly. Epochs are explicit: the
engine says which epoch begins (`set_epoch`, `restore`, or with `model.fit` the callback
`epoch_callback()`, whose ``on_epoch_begin`` passes Keras's epoch number); nothing is inferred
from how often Keras calls ``on_epoch_end``. With `model.fit`, pass ``shuffle=False``: the
pipeline shuffles examples itself, and Keras's ``shuffle=True`` would reorder the batches of
each epoch with Python's `random`.
"""

import threading
import warnings

import keras
import numpy as np

from layerkit.data.decoder import (
    CACHE_LIMIT_BYTES,
    DECODE_CHUNK,
    SMALL_IMAGE_PIXELS,
    DecodedCache,
    Decoder,
    ProcessDecoder,
)
from layerkit.data.device import DeviceCopy, resolve_device
from layerkit.data.prefetch import Prefetcher
from layerkit.data.sampler import Sampler, positive_int

__all__ = ["CACHE_LIMIT_BYTES", "DECODE_CHUNK", "SMALL_IMAGE_PIXELS", "EpochCallback", "Pipeline"]


class Pipeline(keras.utils.PyDataset):
    """Batches of (uint8 images (N, H, W, 3), int32 labels (N,)) from a source.

    Args:
        source: an object from `layerkit.data.sources` (or anything with `__len__`,
            `labels`, `classes` and `encoded_many(indices)` or `images(indices)`).
        batch_size: images per batch (per process).
        shuffle: a new permutation each epoch, made from (seed, epoch).
        seed: the shuffle seed.
        drop_remainder: drop the last, smaller batch. Default: same as `shuffle`.
        image_size: (H, W) to resize and centre-crop every image to; None keeps sizes,
            which must then be equal.
        process_index, process_count: each process gets a disjoint share of every epoch
            (see `layerkit.data.sampler`).
        cache_decoded: True, False or "auto" (decode once and keep when the decoded set is
            at most 1 GiB).
        workers: decoding threads. Default: 1 for images up to 96x96 (their decode calls are
            too short for threads to beat the GIL), else the CPU count.
        prefetch: batches prepared ahead by the background thread (0: none).
        processes: worker processes that read and decode the batches when the pipeline decodes
            every epoch (no decoded cache): 0 (none: the prefetch thread decodes), or a number
            (spawned on first use; each prepares whole batches, `prefetch` is raised to keep
            them busy). Reading and decoding small images is bound by Python's GIL in one
            process (docs/benchmarks.md); processes use every core.
        device: where batches are made: None (the host), a JAX device, True (the first local
            device) or "auto" (the first local device when it is a GPU or TPU and the decoded
            set fits the cache). On a device the decoded data set is kept there and batches
            are (a JAX array on that device, int32 labels). Needs the decoded cache.
    """

    def __init__(self, source, batch_size, shuffle=True, seed=0, drop_remainder=None,
                 image_size=None, process_index=0, process_count=1, cache_decoded="auto",
                 workers=None, prefetch=2, device=None, processes=0):
        # Keras's own enqueuer stays off (workers=1): the pipeline prefetches in order itself.
        super().__init__(workers=1, use_multiprocessing=False)
        if image_size is not None:
            if (len(tuple(image_size)) != 2
                    or any(isinstance(s, bool) or int(s) != s or s < 1 for s in image_size)):
                raise ValueError("image_size must be (height, width), two positive integers. "
                                 f"Received: image_size={image_size!r}")
            image_size = tuple(int(s) for s in image_size)
        if cache_decoded not in (True, False, "auto"):
            raise ValueError("cache_decoded must be True, False or 'auto'. "
                             f"Received: cache_decoded={cache_decoded!r}")
        workers = None if workers is None else positive_int(workers, "workers")
        if isinstance(processes, bool) or not isinstance(processes, (int, np.integer)) or processes < 0:
            raise ValueError(f"processes must be an integer >= 0. Received: processes={processes!r}")

        # === The pieces ===
        self.decoder = Decoder(source, image_size, workers)
        self.labels = np.asarray(source.labels).astype(np.int32)
        self.sampler = Sampler(len(self.labels), batch_size, shuffle, seed, drop_remainder,
                               process_index, process_count)
        self.cache_decoded = cache_decoded
        self.cache = DecodedCache(self.decoder) if self._use_cache() else None
        self.processes = int(processes) if self.cache is None and hasattr(source, "encoded_many") else 0
        self.reader = ProcessDecoder(self.decoder, self.processes) if self.processes else self.decoder
        self.prefetcher = Prefetcher(self.batch_at, max(prefetch, self.processes + 1) if self.processes and prefetch
                                     else prefetch, threads=max(1, self.processes))
        self.device = resolve_device(device, self.cache is not None,
                                     f"cache_decoded={cache_decoded!r}, {len(self.labels)} images of "
                                     f"{self.decoder.image_shape if self.cache is None else self.image_shape}")
        self.device_copy = DeviceCopy(self.cache, self.device) if self.device is not None else None

        # === Where the next batches come from: set explicitly (set_epoch, restore, begin_epoch) ===
        self._lock = threading.Lock()
        self._anchor = 0  # data step of Keras's pass position 0 since set_epoch/restore/begin_training
        self._first = None  # the Keras epoch begun first since then (None: none yet)
        self._steps = None  # Keras steps per epoch, as the engine said
        self._start = self._end = 0  # data steps of the current Keras epoch: first, and after its last
        self._next = 0  # data step after the last batch handed out in a begun epoch
        self._full_pass = False  # (no epoch begun) the last index of a pass was handed out
        self._warned = False

    # === Settings, as attributes ===

    source = property(lambda self: self.decoder.source)
    batch_size = property(lambda self: self.sampler.batch_size)
    shuffle = property(lambda self: self.sampler.shuffle)
    seed = property(lambda self: self.sampler.seed)
    drop_remainder = property(lambda self: self.sampler.drop_remainder)
    process_index = property(lambda self: self.sampler.process_index)
    process_count = property(lambda self: self.sampler.process_count)
    image_size = property(lambda self: self.decoder.image_size)
    decode_workers = property(lambda self: self.decoder.threads)
    prefetch = property(lambda self: self.prefetcher.depth)

    # === PyDataset interface ===

    def __len__(self):
        return self.sampler.num_batches

    @property
    def num_batches(self):
        return self.sampler.num_batches

    def step_of(self, i):
        """The data step Keras's batch index `i` stands for now.

        Keras asks for the batches of a pass over the data set by position 0, 1, ..., n - 1
        (with ``steps_per_epoch`` below ``len(self)`` one pass spans several Keras epochs, and
        the epoch that reaches position n - 1 ends there). Position p of the pass that began
        at data step ``anchor + k * n`` is data step ``anchor + k * n + p``; index `i` is the
        one at or after the current epoch's first step."""
        n = self.sampler.num_batches
        return self._start + (int(i) - (self._start - self._anchor)) % n

    def __getitem__(self, i):
        if not isinstance(i, (int, np.integer)) or not 0 <= i < self.sampler.num_batches:
            raise IndexError(f"batch index must be in [0, {self.sampler.num_batches}). Received: {i!r}")
        n = self.sampler.num_batches
        with self._lock:
            step = self.step_of(i)
            if self._first is not None:
                self._next = max(self._next, step + 1)
            elif i == n - 1:
                self._full_pass = True
            elif i == 0 and self._full_pass and self.shuffle and not self._warned:
                self._warned = True
                warnings.warn(f"the pipeline serves data epoch {step // n} again: nothing told it that a new "
                              "epoch began. Pass callbacks=[pipeline.epoch_callback()] to model.fit, or call "
                              "set_epoch(epoch) before each epoch", stacklevel=2)
        return self.prefetcher.get(step)

    def on_epoch_end(self):
        """Keras calls this before training and after every epoch, evaluation and peek: the
        pipeline's epochs do not follow it (see `epoch_callback`)."""

    def epoch_callback(self, steps_per_epoch=None):
        """The Keras callback by which `model.fit` tells the pipeline which epoch begins; pass
        the `steps_per_epoch` given to fit, if any."""
        return EpochCallback(self, steps_per_epoch)

    def begin_epoch(self, epoch, steps_per_epoch=None):
        """Keras epoch `epoch` of a fit with `steps_per_epoch` (None: a whole pass) begins.

        Its first data step follows from the anchor (where `set_epoch`, `restore` or the last fit
        left the pipeline), the first epoch begun since then and Keras's rule: each epoch takes
        ``steps_per_epoch`` positions of the current pass, or the rest of it if fewer remain."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer. Received: epoch={epoch!r}")
        n = self.sampler.num_batches
        steps = n if steps_per_epoch is None else positive_int(steps_per_epoch, "steps_per_epoch")
        with self._lock:
            if self._first is None or epoch < self._first or steps != self._steps:
                if self._first is not None:  # a new schedule continues from where the last epoch ended
                    self._anchor = self._end
                self._first, self._steps = int(epoch), steps
            start, position = self._anchor, 0
            for _ in range(int(epoch) - self._first):
                taken = min(steps, n - position)
                start, position = start + taken, (position + taken) % n
            self._start, self._end = start, start + min(steps, n - position)
            self._next = start

    def epoch_step(self, batch):
        """The data step of batch `batch` (from 0) of the Keras epoch begun last: where a step
        checkpoint taken before that batch resumes (`restore` of that step)."""
        return self._start + int(batch)

    @property
    def epoch_end_step(self):
        """The data step after the last batch of the Keras epoch begun last (with
        ``steps_per_epoch`` below ``len(self)`` the epoch that reaches a pass's end stops there)."""
        return self._end

    def begin_training(self):
        """A fit begins (`EpochCallback.on_train_begin`): its epochs continue from where the
        pipeline stands (`state()`), not from the Keras epoch numbers of an earlier fit."""
        with self._lock:
            self._anchor = self._start = self._end = self._next_step()
            self._next, self._first, self._full_pass = self._anchor, None, False

    def _next_step(self):
        return min(self._next, self._end) if self._first is not None else self._anchor

    def __iter__(self):
        """Iterate the rest of the current data epoch; the next iteration continues after it."""
        n = self.sampler.num_batches
        with self._lock:
            first = self._next_step()
        for step in range(first, (first // n + 1) * n):
            yield self.prefetcher.get(step)
            with self._lock:
                self._anchor = self._start = self._end = self._next = step + 1
                self._first = None

    # === Epochs and state ===

    @property
    def epoch(self):
        """The data epoch of the next batch."""
        return self._next_step() // self.sampler.num_batches

    def set_epoch(self, epoch):
        """Start at batch 0 of data epoch `epoch`."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer. Received: epoch={epoch!r}")
        self.restore({"epoch": int(epoch), "batch": 0})

    def state(self):
        """Where the pipeline stands: the data epoch and batch of the next batch it hands out."""
        step = self._next_step()
        n = self.sampler.num_batches
        return {"epoch": step // n, "batch": step % n, "seed": self.seed, "num_batches": n}

    def restore(self, state):
        """Continue from `state()`: the following batches are exactly those that would have come.

        Mid-epoch, the next Keras epoch runs from that batch into the next data epoch, so the
        sequence of batches, not the epoch boundaries, is what is preserved.
        """
        if not isinstance(state, dict) or not {"epoch", "batch"} <= set(state):
            raise ValueError(f"state must be a dict from state() with 'epoch' and 'batch'. "
                             f"Received: {state!r}")
        for key in ("seed", "num_batches"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(f"state was saved with {key}={state[key]}, this pipeline has "
                                 f"{key}={getattr(self, key)}")
        epoch, batch = int(state["epoch"]), int(state["batch"])
        n = self.sampler.num_batches
        if epoch < 0 or not 0 <= batch < n:
            raise ValueError(f"state epoch must be >= 0 and batch in [0, {n}). "
                             f"Received: epoch={epoch}, batch={batch}")
        self.prefetcher.reset()
        with self._lock:
            self._anchor = self._start = self._end = self._next = epoch * n + batch
            self._first, self._full_pass, self._warned = None, False, False

    # === Batches ===

    def indices(self, epoch):
        """This process's indices of data epoch `epoch`, in order (trimmed when dropping)."""
        return self.sampler.indices(epoch)

    def batch_indices(self, step):
        return self.sampler.batch_indices(step)

    def batch_at(self, step):
        """The batch at global step `step` (= epoch * len(self) + i): (uint8 NHWC, int32)."""
        idx = self.sampler.batch_indices(step)
        if self.device_copy is not None:
            return self.device_copy(idx), self.labels[idx]
        return self.read(idx), self.labels[idx]

    def read(self, idx):
        """Decoded uint8 images for source indices `idx`."""
        return self.cache(idx) if self.cache is not None else self.reader(idx)

    @property
    def image_shape(self):
        """(H, W, 3) of every image (decodes one image when the source does not say)."""
        return self.decoder.image_shape

    @property
    def caches_decoded(self) -> bool:
        """Whether the whole data set is decoded once and kept (see `cache_decoded`)."""
        return self.cache is not None

    def _use_cache(self):
        if self.cache_decoded == "auto":
            return hasattr(self.source, "encoded_many") and self.decoder.decoded_bytes() <= CACHE_LIMIT_BYTES
        return bool(self.cache_decoded)

    def close(self):
        """Stop the prefetch thread (it also stops with the process) and free the device copy."""
        if self.device_copy is not None:
            self.device_copy.free()
        self.prefetcher.close()
        if self.reader is not self.decoder:
            self.reader.close()

    def __repr__(self):
        return (f"Pipeline({type(self.source).__name__} of {len(self.labels)}, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, seed={self.seed}, "
                f"process {self.process_index}/{self.process_count}, {len(self)} batches)")


class EpochCallback(keras.callbacks.Callback):
    """Tells a `Pipeline` which epoch `model.fit` begins, and when a new fit begins."""

    def __init__(self, pipeline, steps_per_epoch=None):
        super().__init__()
        self.pipeline = pipeline
        self.steps_per_epoch = steps_per_epoch

    def on_train_begin(self, logs=None):
        self.pipeline.begin_training()

    def on_epoch_begin(self, epoch, logs=None):
        self.pipeline.begin_epoch(epoch, self.steps_per_epoch)
