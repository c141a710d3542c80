"""The reader and decoder: source indices to a uint8 (N, H, W, 3) batch, and the decoded cache.

`Decoder` reads a batch of records from the source (``encoded_many``: files, `.npz` slices,
TFRecord payloads) and decodes them as one batch (`decode_batch`, libjpeg-turbo), or takes
already decoded pixels (``images``); an image that fails is named by the source's
``describe(i)`` (file, or shard, record and offset). `DecodedCache` decodes the whole source once,
in chunks, and then serves batches by indexing.
"""

import os
import threading

import numpy as np

from layerkit.data.decode import DecodeError, decode_batch, fit_to

CACHE_LIMIT_BYTES = 1 << 30  # cache_decoded="auto" keeps data sets up to 1 GiB decoded
SMALL_IMAGE_PIXELS = 96 * 96  # decode these in one thread: threads only add GIL contention
DECODE_CHUNK = 1024  # images per decode_batch call when filling the cache


class Decoder:
    """``decoder(indices)``: the decoded images of those source indices, resized to `image_size`
    (H, W) when given. `threads`: decoding threads (default: 1 for images up to 96x96, whose
    decode calls are too short for threads to beat the GIL; else the CPU count)."""

    def __init__(self, source, image_size=None, threads=None):
        if not (hasattr(source, "encoded_many") or hasattr(source, "images")):
            raise ValueError("source must have encoded_many(indices) or images(indices). "
                             f"Received: {type(source).__name__}")
        self.source = source
        self.image_size = image_size
        self.threads = threads
        self._image_shape = None

    @property
    def image_shape(self):
        """(H, W, 3) of every image (decodes one image when the source does not say)."""
        if self._image_shape is None:
            if self.image_size is not None:
                self._image_shape = (*self.image_size, 3)
            elif getattr(self.source, "image_shape", None) is not None:
                self._image_shape = tuple(self.source.image_shape)
            else:
                self._image_shape = tuple(self._decode([0], threads=1)[0].shape)
        return self._image_shape

    def _threads(self):
        if self.threads is not None:
            return self.threads
        h, w = self.image_shape[:2]
        return 1 if h * w <= SMALL_IMAGE_PIXELS else (os.cpu_count() or 1)

    def __call__(self, idx, out=None):
        if hasattr(self.source, "images"):
            images = self._fit(self.source.images(idx))
            if out is not None:
                out[...] = images
                return out
            return images
        return self._decode(idx, out=out)

    def _decode(self, idx, out=None, threads=None):
        try:
            return decode_batch(self.source.encoded_many(idx), size=self.image_size,
                                threads=threads or self._threads(), out=out)
        except DecodeError as err:
            k, describe = getattr(err, "index", None), getattr(self.source, "describe", None)
            if k is None or describe is None:
                raise
            raise DecodeError(f"{describe(int(np.asarray(idx)[k]))}: {err}") from err

    def _fit(self, images):
        if self.image_size is None or images.shape[1:3] == self.image_size:
            return images
        return np.stack([fit_to(img, self.image_size) for img in images])

    def decoded_bytes(self) -> int:
        return len(self.source) * int(np.prod(self.image_shape))


class DecodedCache:
    """The whole source decoded once (thread-safe: the first caller fills it), then indexed."""

    def __init__(self, decoder):
        self.decoder = decoder
        self._array = None
        self._lock = threading.Lock()

    @property
    def array(self):
        with self._lock:
            if self._array is None:
                n = len(self.decoder.source)
                array = np.empty((n, *self.decoder.image_shape), np.uint8)
                for start in range(0, n, DECODE_CHUNK):
                    stop = min(n, start + DECODE_CHUNK)
                    self.decoder(np.arange(start, stop), out=array[start:stop])
                self._array = array
            return self._array

    def __call__(self, idx):
        return self.array[idx]


# === Decoding in worker processes ===

_WORKER = {}  # in a worker process: its Decoder


def _start_worker(state: bytes) -> None:
    import pickle

    source, image_size = pickle.loads(state)
    _WORKER["decoder"] = Decoder(source, image_size, threads=1)


def _decode_in_worker(idx):
    return _WORKER["decoder"](idx)


class ProcessDecoder:
    """A `Decoder` whose work runs in `processes` worker processes, each with its own copy of
    the source (pickled once; a TFRecord shard is reopened there, a `.npz` pack reloaded from
    its file): reading and decoding a batch is Python and C in turns, so threads of one process
    share the GIL, while processes use every core. Workers are spawned (never forked from a
    process running JAX) on first use; a batch comes back as one pickled array."""

    def __init__(self, decoder, processes):
        self.decoder = decoder
        self.processes = processes
        self._pool = None
        self._lock = threading.Lock()

    source = property(lambda self: self.decoder.source)
    image_size = property(lambda self: self.decoder.image_size)
    image_shape = property(lambda self: self.decoder.image_shape)

    def _executor(self):
        with self._lock:
            if self._pool is None:
                import multiprocessing
                import pickle
                from concurrent.futures import ProcessPoolExecutor

                state = pickle.dumps((self.decoder.source, self.decoder.image_size))
                self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_start_worker, initargs=(state,))
            return self._pool

    def __call__(self, idx, out=None):
        images = self._executor().submit(_decode_in_worker, np.asarray(idx)).result()
        if out is not None:
            out[...] = images
            return out
        return images

    def close(self):
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
