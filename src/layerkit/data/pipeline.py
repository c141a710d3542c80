"""The batch-first input pipeline: a `keras.utils.PyDataset` of (uint8 NHWC, int32) batches.

Order of work: a permutation of the indices from (seed, epoch) → this process's slice of
it → read a batch of encoded records → decode the batch in parallel (or take it from the
decoded cache) → yield. A background thread prepares the next batches. Augmentation is
not done here: it runs in the model, inside the jitted step (`layerkit.augment`).

Batches are numbered by a global step ``epoch * len(self) + i``; a batch depends only on
its step, so runs are reproducible and `restore(state)` resumes exactly. With
`model.fit`, pass ``shuffle=False``: the pipeline shuffles examples itself, and Keras's
``shuffle=True`` would reorder the batches of each epoch with Python's `random`.

With ``device=`` a JAX device, the decoded data set is put on that device once and each batch
is gathered there: a step sends the accelerator only its batch's indices (small data sets,
JAX backend).
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor
import keras
import numpy as np

from layerkit.data.decode import DecodeError, decode_batch, fit_to

CACHE_LIMIT_BYTES = 1 << 30  # cache_decoded="auto" keeps data sets up to 1 GiB decoded
SMALL_IMAGE_PIXELS = 96 * 96  # decode these in one thread: threads only add GIL contention
DECODE_CHUNK = 1024  # images per decode_batch call when filling the cache


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
    return int(value)


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
        process_index, process_count: each process gets a disjoint share of every epoch.
            With `drop_remainder` (training) it is block `process_index` of each global
            batch of ``batch_size * process_count`` images, so the processes together see
            the batches, in the order, of one process with the global batch size; without,
            the slice ``permutation[process_index::process_count]``.
        cache_decoded: True, False or "auto" (decode once and keep when the decoded set is
            at most 1 GiB).
        workers: decoding threads. Default: 1 for images up to 96x96 (their decode calls are
            too short for threads to beat the GIL), else the CPU count.
        prefetch: batches prepared ahead by the background thread (0: none).
        device: a JAX device (or True for the first local one) to keep the decoded data set
            on; batches are then (a JAX array on that device, int32 labels). Needs the
            decoded cache (`cache_decoded` True, or "auto" within its limit).
    """

    def __init__(self, source, batch_size, shuffle=True, seed=0, drop_remainder=None,
                 image_size=None, process_index=0, process_count=1, cache_decoded="auto",
                 workers=None, prefetch=2, device=None):
        # Keras's own enqueuer stays off (workers=1): the pipeline prefetches in order itself.
        super().__init__(workers=1, use_multiprocessing=False)
        if not (hasattr(source, "encoded_many") or hasattr(source, "images")):
            raise ValueError("source must have encoded_many(indices) or images(indices). "
                             f"Received: {type(source).__name__}")
        self.source = source
        self.batch_size = _positive_int(batch_size, "batch_size")
        self.shuffle = bool(shuffle)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer. Received: seed={seed!r}")
        self.seed = int(seed)
        self.drop_remainder = self.shuffle if drop_remainder is None else bool(drop_remainder)
        if image_size is not None:
            if (len(tuple(image_size)) != 2
                    or any(isinstance(s, bool) or int(s) != s or s < 1 for s in image_size)):
                raise ValueError("image_size must be (height, width), two positive integers. "
                                 f"Received: image_size={image_size!r}")
            image_size = tuple(int(s) for s in image_size)
        self.image_size = image_size
        self.process_count = _positive_int(process_count, "process_count")
        if not isinstance(process_index, (int, np.integer)) or not (
                0 <= process_index < self.process_count):
            raise ValueError(f"process_index must be in [0, {self.process_count}). "
                             f"Received: process_index={process_index!r}")
        self.process_index = int(process_index)
        if cache_decoded not in (True, False, "auto"):
            raise ValueError("cache_decoded must be True, False or 'auto'. "
                             f"Received: cache_decoded={cache_decoded!r}")
        self.cache_decoded = cache_decoded
        self.decode_workers = None if workers is None else _positive_int(workers, "workers")
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"prefetch must be an integer >= 0. Received: prefetch={prefetch!r}")
        self.prefetch = prefetch
        self.device = device
        self._device_images = None

        self.labels = np.asarray(source.labels).astype(np.int32)
        n = len(self.labels)
        per_process = n // self.process_count if self.drop_remainder else -(
            -(n - self.process_index) // self.process_count)
        if self.drop_remainder:
            self._per_process = per_process - per_process % self.batch_size
        else:
            self._per_process = per_process
        if self._per_process == 0:
            raise ValueError(
                f"{n} images split over {self.process_count} process(es) make no full batch of "
                f"{self.batch_size}: lower batch_size or pass drop_remainder=False")
        self._num_batches = -(-self._per_process // self.batch_size)

        self._epoch = 0  # the Keras epoch counter (advanced by on_epoch_end)
        self._offset = 0  # global step of this Keras epoch's batch 0, less epoch * len
        self._served = 0  # batches handed out in the current Keras epoch
        self._cache = None
        self._image_shape = None
        self._lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._futures = {}
        self._executor = None
        self._order_lock = threading.Lock()
        self._orders = {}  # epoch -> this process's indices (the last few epochs)

    # === PyDataset interface ===

    def __len__(self):
        return self._num_batches

    @property
    def num_batches(self):
        return self._num_batches

    def __getitem__(self, i):
        if not isinstance(i, (int, np.integer)) or not 0 <= i < self._num_batches:
            raise IndexError(f"batch index must be in [0, {self._num_batches}). Received: {i!r}")
        step = self._epoch * self._num_batches + self._offset + int(i)
        with self._lock:
            self._served = max(self._served, int(i) + 1)
            future = self._futures.pop(step, None)
            for old in [s for s in self._futures if s < step]:
                self._futures.pop(old).cancel()
        batch = future.result() if future is not None else self.batch_at(step)
        self._schedule(step + 1)
        return batch

    def on_epoch_end(self):
        # Keras also ends "epochs" it only peeked into (fit's first look at batch 0, and the
        # reset before training): only an epoch whose every batch was handed out advances.
        with self._lock:
            if self._served >= self._num_batches:
                self._epoch += 1
                self._served = 0

    def __iter__(self):
        """Iterate the rest of the current epoch, then advance to the next."""
        for i in range(self._served, self._num_batches):
            yield self[i]
        self.on_epoch_end()

    # === Epochs and state ===

    @property
    def epoch(self):
        """The data epoch of the next batch."""
        return self._next_step() // self._num_batches

    def _next_step(self):
        return self._epoch * self._num_batches + self._offset + self._served

    def set_epoch(self, epoch):
        """Start at batch 0 of data epoch `epoch` (for loops that count epochs themselves)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer. Received: epoch={epoch!r}")
        self.restore({"epoch": int(epoch), "batch": 0})

    def state(self):
        """Where the pipeline stands: the data epoch and batch of the next batch it hands out."""
        step = self._next_step()
        return {"epoch": step // self._num_batches, "batch": step % self._num_batches,
                "seed": self.seed, "num_batches": self._num_batches}

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
        if epoch < 0 or not 0 <= batch < self._num_batches:
            raise ValueError(f"state epoch must be >= 0 and batch in [0, {self._num_batches}). "
                             f"Received: epoch={epoch}, batch={batch}")
        with self._lock:
            for f in self._futures.values():
                f.cancel()
            self._futures.clear()
            self._epoch, self._offset, self._served = epoch, batch, 0

    # === Batches ===

    def indices(self, epoch):
        """This process's indices of data epoch `epoch`, in order (trimmed when dropping)."""
        epoch = int(epoch)
        with self._order_lock:
            if epoch not in self._orders:
                if len(self._orders) >= 4:
                    self._orders.pop(min(self._orders))
                self._orders[epoch] = self._make_indices(epoch)
            return self._orders[epoch]

    def _make_indices(self, epoch):
        n = len(self.labels)
        if self.shuffle:
            order = np.random.Generator(np.random.PCG64([self.seed, epoch])).permutation(n)
        else:
            order = np.arange(n)
        if self.drop_remainder:  # block i of every global batch: the one-process order
            per_global = self.batch_size * self.process_count
            usable = order[: n // per_global * per_global]
            return usable.reshape(-1, self.process_count, self.batch_size)[:, self.process_index].ravel()
        return order[self.process_index :: self.process_count][: self._per_process]

    def batch_indices(self, step):
        epoch, i = divmod(int(step), self._num_batches)
        return self.indices(epoch)[i * self.batch_size : (i + 1) * self.batch_size]

    def batch_at(self, step):
        """The batch at global step `step` (= epoch * len(self) + i): (uint8 NHWC, int32)."""
        idx = self.batch_indices(step)
        if self.device is not None:
            images, gather = self._on_device()
            return gather(images, idx), self.labels[idx]
        return self.read(idx), self.labels[idx]

    def _on_device(self):
        """(the decoded data set on `device`, a jitted gather), made once."""
        if self._device_images is None:
            if not self.caches_decoded:
                raise ValueError(
                    "device= keeps the decoded data set on the accelerator, so it needs the decoded "
                    f"cache: pass cache_decoded=True (cache_decoded={self.cache_decoded!r}, "
                    f"{len(self.labels)} images of {self.image_shape})")
            import jax

            device = jax.local_devices()[0] if self.device is True else self.device
            images = jax.device_put(self._cached(), device)
            with self._cache_lock:
                if self._device_images is None:
                    self._device_images = (images, jax.jit(lambda data, idx: data[idx]))
        return self._device_images

    def read(self, idx):
        """Decoded uint8 images for source indices `idx`."""
        if self._use_cache():
            return self._cached()[idx]
        if hasattr(self.source, "images"):
            return self._fit(self.source.images(idx))
        return self._decode(idx)

    def _decode(self, idx, out=None, threads=None):
        """decode_batch of source indices `idx`; a `DecodeError` names the image by the source's
        ``describe(i)`` (file, or shard, record and offset) when the source has one."""
        try:
            return decode_batch(self.source.encoded_many(idx), size=self.image_size,
                                threads=threads or self._threads(), out=out)
        except DecodeError as err:
            k, describe = getattr(err, "index", None), getattr(self.source, "describe", None)
            if k is None or describe is None:
                raise
            raise DecodeError(f"{describe(int(np.asarray(idx)[k]))}: {err}") from err

    @property
    def image_shape(self):
        """(H, W, 3) of every image (decodes one image when the source does not say)."""
        if self._image_shape is None:
            if self.image_size is not None:
                self._image_shape = (*self.image_size, 3)
            elif getattr(self.source, "image_shape", None) is not None:
                self._image_shape = tuple(self.source.image_shape)
            else:
                self._image_shape = self._decode([0], threads=1)[0].shape
        return self._image_shape

    def _threads(self):
        if self.decode_workers is not None:
            return self.decode_workers
        h, w = self.image_shape[:2]
        return 1 if h * w <= SMALL_IMAGE_PIXELS else (os.cpu_count() or 1)

    def _fit(self, images):
        if self.image_size is None or images.shape[1:3] == self.image_size:
            return images
        return np.stack([fit_to(img, self.image_size) for img in images])

    @property
    def caches_decoded(self) -> bool:
        """Whether the whole data set is decoded once and kept (see `cache_decoded`)."""
        return self._use_cache()

    def _use_cache(self):
        if self.cache_decoded == "auto":
            if not hasattr(self.source, "encoded_many"):
                return False
            return len(self.labels) * int(np.prod(self.image_shape)) <= CACHE_LIMIT_BYTES
        return bool(self.cache_decoded)

    def _cached(self):
        """The whole source decoded once (thread-safe; the first caller fills it)."""
        with self._cache_lock:
            if self._cache is None:
                n = len(self.labels)
                cache = np.empty((n, *self.image_shape), np.uint8)
                for start in range(0, n, DECODE_CHUNK):
                    idx = np.arange(start, min(n, start + DECODE_CHUNK))
                    if hasattr(self.source, "images"):
                        cache[idx] = self._fit(self.source.images(idx))
                    else:
                        self._decode(idx, out=cache[idx[0] : idx[-1] + 1])
                self._cache = cache
            return self._cache

    def _schedule(self, step):
        if not self.prefetch:
            return
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="layerkit-prefetch")
            for s in range(step, step + self.prefetch):
                if s not in self._futures:
                    self._futures[s] = self._executor.submit(self.batch_at, s)

    def close(self):
        """Stop the prefetch thread (it also stops with the process) and free the device copy."""
        self._device_images = None
        with self._lock:
            for f in self._futures.values():
                f.cancel()
            self._futures.clear()
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    def __repr__(self):
        return (f"Pipeline({type(self.source).__name__} of {len(self.labels)}, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, seed={self.seed}, "
                f"process {self.process_index}/{self.process_count}, {len(self)} batches)")
