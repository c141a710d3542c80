"""Device placement: the decoded data set kept on one JAX device, batches gathered there.

`resolve_device` turns the `Pipeline(device=...)` argument into a JAX device or None:
None (host batches), True (the first local device), "auto" (the first local device when it is
a GPU or TPU and the decoded set fits the cache), or a `jax.Device`. `DeviceCopy` puts the
decoded cache on it once and gathers each batch with a jitted index, so a step sends the
accelerator only its batch's indices.
"""

import threading


def resolve_device(device, caches_decoded: bool, describe: str):
    if device is None or device is False:
        return None
    import keras

    if keras.backend.backend() != "jax":
        if device == "auto":
            return None
        raise ValueError(f"device= keeps the data set on a JAX device: it needs the JAX backend. "
                         f"Received: device={device!r}, KERAS_BACKEND={keras.backend.backend()}")
    import jax

    if device == "auto":
        first = jax.local_devices()[0]
        return first if first.platform != "cpu" and caches_decoded else None
    if not caches_decoded:
        raise ValueError(
            "device= keeps the decoded data set on the accelerator, so it needs the decoded "
            f"cache: pass cache_decoded=True ({describe})")
    if device is True:
        return jax.local_devices()[0]
    if not isinstance(device, jax.Device):
        raise ValueError(f"device must be None, True, 'auto' or a jax.Device. Received: device={device!r}")
    return device


class DeviceCopy:
    """``copy(indices)``: a batch gathered on `device` from the decoded set put there once."""

    def __init__(self, cache, device):
        self.cache = cache
        self.device = device
        self._state = None
        self._lock = threading.Lock()

    def _made(self):
        with self._lock:
            if self._state is None:
                import jax

                self._state = (jax.device_put(self.cache.array, self.device), jax.jit(lambda data, idx: data[idx]))
            return self._state

    def __call__(self, idx):
        images, gather = self._made()
        return gather(images, idx)

    def free(self):
        with self._lock:
            self._state = None
