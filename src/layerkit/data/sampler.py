"""The sampler: which source indices make each batch, a pure function of (seed, epoch, step).

Data epoch `e` has its own permutation, made from ``np.random.PCG64([seed, e])``; batch `i` of
epoch `e` is global step ``e * num_batches + i``. With several processes each takes a disjoint
share: block `process_index` of every global batch when dropping the remainder (so the processes
together serve the batches of one process with the global batch size), else the slice
``permutation[process_index::process_count]``.
"""

import threading

import numpy as np


def positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
    return int(value)


class Sampler:
    """Batches of indices into `n` examples: ``indices(epoch)``, ``batch_indices(step)``."""

    def __init__(self, n, batch_size, shuffle=True, seed=0, drop_remainder=None, process_index=0,
                 process_count=1):
        self.n = int(n)
        self.batch_size = positive_int(batch_size, "batch_size")
        self.shuffle = bool(shuffle)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer. Received: seed={seed!r}")
        self.seed = int(seed)
        self.drop_remainder = self.shuffle if drop_remainder is None else bool(drop_remainder)
        self.process_count = positive_int(process_count, "process_count")
        if not isinstance(process_index, (int, np.integer)) or not 0 <= process_index < self.process_count:
            raise ValueError(f"process_index must be in [0, {self.process_count}). "
                             f"Received: process_index={process_index!r}")
        self.process_index = int(process_index)
        if self.drop_remainder:
            per_process = self.n // self.process_count
            self.per_process = per_process - per_process % self.batch_size
        else:
            self.per_process = -(-(self.n - self.process_index) // self.process_count)
        if self.per_process == 0:
            raise ValueError(
                f"{self.n} images split over {self.process_count} process(es) make no full batch of "
                f"{self.batch_size}: lower batch_size or pass drop_remainder=False")
        self.num_batches = -(-self.per_process // self.batch_size)
        self._lock = threading.Lock()
        self._orders = {}  # epoch -> this process's indices (the last few epochs)

    def indices(self, epoch):
        """This process's indices of data epoch `epoch`, in order (trimmed when dropping)."""
        epoch = int(epoch)
        with self._lock:
            if epoch not in self._orders:
                if len(self._orders) >= 4:
                    self._orders.pop(min(self._orders))
                self._orders[epoch] = self._make(epoch)
            return self._orders[epoch]

    def _make(self, epoch):
        if self.shuffle:
            order = np.random.Generator(np.random.PCG64([self.seed, epoch])).permutation(self.n)
        else:
            order = np.arange(self.n)
        if self.drop_remainder:  # block i of every global batch: the one-process order
            per_global = self.batch_size * self.process_count
            usable = order[: self.n // per_global * per_global]
            return usable.reshape(-1, self.process_count, self.batch_size)[:, self.process_index].ravel()
        return order[self.process_index :: self.process_count][: self.per_process]

    def batch_indices(self, step):
        """The source indices of global step `step` (= epoch * num_batches + batch)."""
        epoch, i = divmod(int(step), self.num_batches)
        return self.indices(epoch)[i * self.batch_size : (i + 1) * self.batch_size]
