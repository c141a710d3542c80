"""The speed run's optimiser: Nesterov SGD with per-group learning rates, Muon, lookahead.

Written in JAX on lists of arrays, in the order of the model's trainable variables, so that one
jitted step updates everything. Each variable belongs to one group (`groups`):

- ``filters``: the 3x3 conv kernels: Muon (optimizer="muon") or SGD at `lr`;
- ``head``: the linear head, SGD at `head_lr`;
- ``bias``: BatchNorm biases, SGD at `bias_lr`;
- ``whiten_bias``: the whitening bias, SGD at `whiten_bias_lr`, only during the first
  `whiten_bias_epochs`.

SGD follows PyTorch's Nesterov form on the gradient of the *summed* loss ``G``:
``d = G + l2 * w;  b = m * b + d;  w -= lr * s * (d + m * b)``, with the decoupled settings
of `SpeedrunConfig` converted to ``lr`` and ``l2`` by `sgd_coefficients`. Muon (Jordan et al.,
2024) replaces a filter's Nesterov-momentum update by its nearest semi-orthogonal matrix
(Newton-Schulz iterations) and keeps each filter bank at norm sqrt(out channels).
"""

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

# Quintic Newton-Schulz coefficients chosen for the steepest slope at zero (Muon): a few
# iterations map every singular value of a normalised matrix into roughly [0.5, 1.5].
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
LOOKAHEAD_EVERY = 5


@dataclass(frozen=True)
class Group:
    kind: str  # "sgd" or "muon"
    lr: float  # the raw step on the summed-loss gradient (sgd) or the Muon step
    l2: float  # coupled L2 coefficient (sgd)
    momentum: float
    schedule: str  # "main" or "whiten"


def sgd_coefficients(lr: float, weight_decay: float, momentum: float, batch_size: int):
    """(raw lr, L2 coefficient) of decoupled settings: lr per 1024 examples independent of the
    momentum, weight decay per 1024 examples independent of the lr."""
    kilostep = 1024 * (1 + 1 / (1 - momentum))
    raw_lr = lr / kilostep
    decay = weight_decay * batch_size / kilostep  # fraction of w removed per step at full lr
    return raw_lr, (decay / raw_lr if raw_lr > 0 else 0.0)


def group_of(path: str) -> str:
    """The group of a trainable variable, from its Keras path ("block0_conv1/kernel", ...)."""
    layer, _, weight = path.rpartition("/")
    if layer.startswith("whiten"):
        return "whiten_bias"
    if layer == "head":
        return "head"
    if weight == "beta":
        return "bias"
    if weight == "kernel" and "_conv" in layer:
        return "filters"
    raise ValueError(f"the speed run has no optimiser group for variable {path!r}")


def make_groups(config, paths) -> list:
    b = config.batch_size
    sgd = {name: Group("sgd", *sgd_coefficients(lr, config.weight_decay, config.momentum, b), config.momentum,
                       "whiten" if name == "whiten_bias" else "main")
           for name, lr in (("filters", config.lr), ("head", config.head_lr), ("bias", config.bias_lr),
                            ("whiten_bias", config.whiten_bias_lr))}
    if config.optimizer == "muon":
        sgd["filters"] = Group("muon", config.muon_lr, 0.0, config.muon_momentum, "main")
    return [sgd[group_of(p)] for p in paths]


def lr_multiplier(step, total_steps: int, config):
    """Piecewise linear: start_lr at 0, 1 at warmup * total, end_lr at total."""
    step = jnp.asarray(step, jnp.float32)
    warm = config.warmup * total_steps
    if warm >= 1:
        rising = config.start_lr + (1 - config.start_lr) * step / warm
    else:
        rising = jnp.float32(1.0)
    falling = 1 + (config.end_lr - 1) * (step - warm) / max(total_steps - warm, 1)
    return jnp.where(step < warm, rising, jnp.clip(falling, min(config.end_lr, 1.0), 1.0))


def whiten_multiplier(step, whiten_steps: int, main, config):
    """The whitening bias learns for `whiten_steps` steps: at the main schedule, or falling linearly to 0."""
    step = jnp.asarray(step, jnp.float32)
    scale = (1 - step / max(whiten_steps, 1)) if config.whiten_bias_decay else main
    return jnp.where(step < whiten_steps, scale, 0.0)


def orthogonalize(matrix, steps: int, dtype=jnp.bfloat16):
    """Approximately U V^T of ``matrix = U S V^T`` by quintic Newton-Schulz iterations."""
    a, b, c = NS_COEFFICIENTS
    x = matrix.astype(dtype)
    wide = x.shape[0] <= x.shape[1]
    x = x if wide else x.T
    x = x / (jnp.linalg.norm(x.astype(jnp.float32)).astype(dtype) + 1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x if wide else x.T).astype(matrix.dtype)


def apply(groups, params, grads, buffers, multipliers, batch_size: int, muon_steps: int, muon_dtype):
    """One optimiser step; `grads` are of the mean loss; `multipliers` maps schedule -> scale."""
    new_params, new_buffers = [], []
    for group, w, g, buf in zip(groups, params, grads, buffers):
        g = g.astype(jnp.float32) * batch_size  # the summed-loss gradient
        s = multipliers[group.schedule]
        if group.kind == "sgd":
            d = g + group.l2 * w
            buf = group.momentum * buf + d
            w = w - group.lr * s * (d + group.momentum * buf)
        else:  # muon, on a conv kernel (kh, kw, in, out)
            buf = group.momentum * buf + g
            update = g + group.momentum * buf
            out = w.shape[-1]
            w = w * (math.sqrt(out) / jnp.linalg.norm(w))
            step = orthogonalize(update.reshape(-1, out), muon_steps, muon_dtype).reshape(w.shape)
            w = w - group.lr * s * step
        new_params.append(w)
        new_buffers.append(buf)
    return new_params, new_buffers


def lookahead_decay(step, total_steps: int):
    """The EMA decay at `step` (after the update): 0.95^5 (step / total)^3 (airbench's schedule)."""
    return 0.95 ** LOOKAHEAD_EVERY * (jnp.asarray(step, jnp.float32) / total_steps) ** 3


def lookahead(weights, ema, step, total_steps: int):
    """Every LOOKAHEAD_EVERY steps: ema <- ema + (1 - decay) (w - ema), then w <- ema."""
    due = (step % LOOKAHEAD_EVERY) == 0
    decay = lookahead_decay(step, total_steps)
    moved = [e + (1 - decay) * (w.astype(e.dtype) - e) for w, e in zip(weights, ema)]
    ema = [jnp.where(due, m, e) for m, e in zip(moved, ema)]
    weights = [jnp.where(due, e.astype(w.dtype), w) for w, e in zip(weights, ema)]
    return weights, ema
