"""`MuonNesterov`: airbench's optimiser as one Keras optimizer (``optimizer=muon`` or
``optimizer=decoupled-sgd`` in a `Config`).

Each trainable variable falls in a group, by its shape and path:

- ``filters``: 4-D conv kernels: Muon (``muon=True``) or Nesterov SGD at the base rate;
- ``head``: 2-D (dense) kernels: SGD at `head_lr`;
- ``whiten_bias``: a 1-D variable of a layer named ``whiten...`` (`PatchWhitening`'s bias):
  SGD at `whiten_bias_lr`, only for the first `whiten_bias_steps` steps;
- ``bias``: the other 1-D variables (biases, BatchNorm): SGD at `bias_lr`.

The SGD groups use airbench's *decoupled* convention, so that published values carry over:
a learning rate is per 1024 examples and independent of the momentum ``m``, and
`decay_per_1024` is the weight decay per 1024 examples, independent of the rate. On the
gradient of the *summed* loss ``G`` (Keras hands the optimizer that of the mean loss; it is
multiplied by `batch_size`), PyTorch's Nesterov form:
``d = G + l2 w;  b = m b + d;  w -= raw_lr s (d + m b)`` with
``raw_lr = lr / (1024 (1 + 1 / (1 - m)))`` and ``l2 = decay_per_1024 * batch_size / 1024 / (lr / 1024)``
(`sgd_coefficients`). Muon (Jordan et al., 2024) replaces a filter bank's Nesterov-momentum
update by its nearest semi-orthogonal matrix (Newton-Schulz iterations) and keeps the bank at
norm sqrt(out channels); its step is the scheduled learning rate itself.

``s`` is the schedule's multiplier: the optimizer's `learning_rate` at this step divided by
`base_lr` (the schedule's peak, `Config.lr`), so one `Config.schedule` drives every group.

Lookahead (``lookahead_steps=T``, airbench's): every 5 steps the slow weights move towards
the weights, ``slow += (1 - 0.95^5 (t / T)^3) (w - slow)``, and the weights are set to them;
at step T the weights end on the slow weights. The slow weights are optimizer variables, so
a `.keras` checkpoint carries them and a resumed run continues exactly. (airbench also
averages the BatchNorm statistics; Keras optimizers see only trainable variables, so here
the statistics keep their own running average.)
"""

import math

import keras
from keras import ops

# Quintic Newton-Schulz coefficients chosen for the steepest slope at zero (Muon): a few
# iterations map every singular value of a normalised matrix into roughly [0.5, 1.5].
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
LOOKAHEAD_EVERY = 5  # steps between lookahead pulls
GROUPS = ("filters", "head", "bias", "whiten_bias")


def sgd_coefficients(lr: float, decay_per_1024: float, momentum: float, batch_size: int):
    """(raw lr, L2 coefficient) of decoupled settings: lr per 1024 examples independent of the
    momentum, weight decay per 1024 examples independent of the lr."""
    kilostep = 1024 * (1 + 1 / (1 - momentum))
    raw_lr = lr / kilostep
    decay = decay_per_1024 * batch_size / kilostep  # fraction of w removed per step at full lr
    return raw_lr, (decay / raw_lr if raw_lr > 0 else 0.0)


def group_of(path: str, ndim: int) -> str:
    """The group of a trainable variable from its Keras path ("block0_conv1/kernel") and rank."""
    layer = path.rpartition("/")[0].rpartition("/")[2]
    if ndim == 4:
        return "filters"
    if ndim == 2:
        return "head"
    if ndim <= 1:
        return "whiten_bias" if layer.startswith("whiten") else "bias"
    raise ValueError(f"MuonNesterov has no group for the {ndim}-D variable {path!r} "
                     "(it takes 4-D conv kernels, 2-D dense kernels and 1-D biases)")


def orthogonalize(matrix, steps: int, dtype="bfloat16"):
    """Approximately U V^T of ``matrix = U S V^T`` by quintic Newton-Schulz iterations."""
    a, b, c = NS_COEFFICIENTS
    x = ops.cast(matrix, dtype)
    wide = x.shape[0] <= x.shape[1]
    x = x if wide else ops.transpose(x)
    x = x / ops.cast(ops.norm(ops.cast(x, "float32")) + 1e-7, dtype)
    for _ in range(steps):
        gram = ops.matmul(x, ops.transpose(x))
        x = a * x + ops.matmul(b * gram + c * ops.matmul(gram, gram), x)
    return ops.cast(x if wide else ops.transpose(x), matrix.dtype)


def _check(name, value, low=0.0, below=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low or (
            below is not None and not value < below):
        span = f"[{low}, {below})" if below is not None else f">= {low}"
        raise ValueError(f"MuonNesterov {name} must be a number {span}. Received: {name}={value!r}")
    return float(value)


@keras.saving.register_keras_serializable(package="layerkit")
class MuonNesterov(keras.optimizers.Optimizer):
    """Muon on conv filters (or SGD), decoupled Nesterov SGD on the rest, optional lookahead.

    Args:
        learning_rate: a float or schedule; its value over `base_lr` scales every group.
        base_lr: the peak of `learning_rate`: the filters' rate (the Muon step, or the SGD
            rate per 1024 examples).
        batch_size: examples per step (the global batch).
        momentum: Nesterov momentum of the SGD groups.
        decay_per_1024: weight decay of the SGD groups per 1024 examples.
        muon: True: Muon on the filters; False: SGD at `base_lr`.
        muon_momentum, muon_steps: Muon's momentum and Newton-Schulz iterations.
        head_lr, bias_lr, whiten_bias_lr: SGD rates per 1024 examples (default `base_lr`).
        whiten_bias_steps: the whitening bias learns this many steps, then is frozen.
        whiten_bias_decay: True: its rate falls linearly to 0 over them; False: the schedule's.
        lookahead_steps: total steps of the run for lookahead (0: no lookahead).
        newton_schulz_dtype: "bfloat16" or "float32".
    """

    def __init__(self, learning_rate, base_lr, batch_size, momentum=0.85, decay_per_1024=0.0, muon=True,
                 muon_momentum=0.6, muon_steps=3, head_lr=None, bias_lr=None, whiten_bias_lr=None,
                 whiten_bias_steps=0, whiten_bias_decay=True, lookahead_steps=0,
                 newton_schulz_dtype="bfloat16", name="muon_nesterov", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.base_lr = _check("base_lr", base_lr)
        if self.base_lr <= 0:
            raise ValueError(f"MuonNesterov base_lr must be > 0. Received: base_lr={base_lr!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"MuonNesterov batch_size must be a positive integer. Received: batch_size={batch_size!r}")
        self.batch_size = batch_size
        self.momentum = _check("momentum", momentum, 0.0, 1.0)
        self.muon_momentum = _check("muon_momentum", muon_momentum, 0.0, 1.0)
        self.decay_per_1024 = _check("decay_per_1024", decay_per_1024)
        self.muon = bool(muon)
        for key, value in (("muon_steps", muon_steps), ("whiten_bias_steps", whiten_bias_steps),
                           ("lookahead_steps", lookahead_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"MuonNesterov {key} must be an integer >= 0. Received: {key}={value!r}")
        self.muon_steps, self.whiten_bias_steps, self.lookahead_steps = muon_steps, whiten_bias_steps, lookahead_steps
        self.head_lr = self.base_lr if head_lr is None else _check("head_lr", head_lr)
        self.bias_lr = self.base_lr if bias_lr is None else _check("bias_lr", bias_lr)
        self.whiten_bias_lr = self.base_lr if whiten_bias_lr is None else _check("whiten_bias_lr", whiten_bias_lr)
        self.whiten_bias_decay = bool(whiten_bias_decay)
        if newton_schulz_dtype not in ("bfloat16", "float32"):
            raise ValueError("MuonNesterov newton_schulz_dtype must be 'bfloat16' or 'float32'. "
                             f"Received: newton_schulz_dtype={newton_schulz_dtype!r}")
        self.newton_schulz_dtype = newton_schulz_dtype

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self._groups = [group_of(v.path, len(v.shape)) for v in variables]
        self.momentums = self.add_optimizer_variables(variables, "momentum")
        self.slow_weights = self.add_optimizer_variables(variables, "slow") if self.lookahead_steps else []

    def _multiplier(self, group, learning_rate):
        main = ops.cast(learning_rate, "float32") / self.base_lr
        if group != "whiten_bias":
            return main
        step = ops.cast(ops.convert_to_tensor(self.iterations), "float32")
        scale = (1.0 - step / max(self.whiten_bias_steps, 1)) if self.whiten_bias_decay else main
        return ops.where(step < self.whiten_bias_steps, scale, 0.0)

    def update_step(self, gradient, variable, learning_rate):
        i = self._get_variable_index(variable)
        group = self._groups[i]
        buf = ops.convert_to_tensor(self.momentums[i])
        w = ops.cast(variable, "float32")
        g = ops.cast(gradient, "float32") * self.batch_size  # the summed-loss gradient
        s = self._multiplier(group, learning_rate)
        if group == "filters" and self.muon:
            m = self.muon_momentum
            new_buf = m * buf + g
            update = g + m * new_buf
            out = variable.shape[-1]
            w = w * (math.sqrt(out) / ops.norm(w))
            step = ops.reshape(orthogonalize(ops.reshape(update, (-1, out)), self.muon_steps,
                                             self.newton_schulz_dtype), variable.shape)
            new_w = w - self.base_lr * s * step  # the scheduled rate itself
        else:
            lr = {"filters": self.base_lr, "head": self.head_lr, "bias": self.bias_lr,
                  "whiten_bias": self.whiten_bias_lr}[group]
            raw_lr, l2 = sgd_coefficients(lr, self.decay_per_1024, self.momentum, self.batch_size)
            m = self.momentum
            d = g + l2 * w
            new_buf = m * buf + d
            new_w = w - raw_lr * s * (d + m * new_buf)
        self.assign(self.momentums[i], new_buf)
        if self.lookahead_steps:
            new_w = self._lookahead(self.slow_weights[i], w_before=ops.cast(variable, "float32"), w=new_w)
        self.assign(variable, ops.cast(new_w, variable.dtype))

    def _lookahead(self, slow, w_before, w):
        iterations = ops.convert_to_tensor(self.iterations)
        step = iterations + 1  # this update's number
        slow_value = ops.where(ops.equal(iterations, 0), w_before, ops.convert_to_tensor(slow))  # starts at the initial weights
        due = ops.equal(step % LOOKAHEAD_EVERY, 0)
        decay = 0.95 ** LOOKAHEAD_EVERY * (ops.cast(step, "float32") / self.lookahead_steps) ** 3
        moved = slow_value + (1 - decay) * (w - slow_value)
        slow_value = ops.where(due, moved, slow_value)
        self.assign(slow, slow_value)
        return ops.where(due | ops.equal(step, self.lookahead_steps), slow_value, w)

    def get_config(self):
        return {**super().get_config(), "base_lr": self.base_lr, "batch_size": self.batch_size,
                "momentum": self.momentum, "decay_per_1024": self.decay_per_1024, "muon": self.muon,
                "muon_momentum": self.muon_momentum, "muon_steps": self.muon_steps, "head_lr": self.head_lr,
                "bias_lr": self.bias_lr, "whiten_bias_lr": self.whiten_bias_lr,
                "whiten_bias_steps": self.whiten_bias_steps, "whiten_bias_decay": self.whiten_bias_decay,
                "lookahead_steps": self.lookahead_steps, "newton_schulz_dtype": self.newton_schulz_dtype}
