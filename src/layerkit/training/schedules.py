"""Learning-rate schedules, per optimizer step, serializable with the optimizer.

Keras has piecewise-constant and cosine-with-warm-up schedules; layerkit adds the
flowers lab's ramp-up-then-exponential-decay, the one-cycle policy and airbench's piecewise
linear schedule, and
`make_schedule` builds any of them from a `Config`.
"""

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="layerkit")
class WarmupExponential(keras.optimizers.schedules.LearningRateSchedule):
    """Linear ramp from `start_lr` to `peak_lr` over `warmup_steps`, then
    ``peak_lr * decay_rate ** ((step - warmup_steps) / steps_per_epoch)``, floored at `min_lr`.

    The Keras-on-TPU flowers lab's schedule for fine-tuning (ramp-up, then exponential decay).
    """

    def __init__(self, peak_lr, warmup_steps, steps_per_epoch, decay_rate=0.8, start_lr=0.0, min_lr=0.0):
        self.peak_lr = float(peak_lr)
        self.warmup_steps = int(warmup_steps)
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.decay_rate = float(decay_rate)
        self.start_lr = float(start_lr)
        self.min_lr = float(min_lr)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = max(self.warmup_steps, 1)
        ramp = self.start_lr + (self.peak_lr - self.start_lr) * step / warm
        epochs_after = (step - self.warmup_steps) / self.steps_per_epoch
        decayed = self.peak_lr * ops.power(self.decay_rate, ops.maximum(epochs_after, 0.0))
        lr = ops.where(step < self.warmup_steps, ramp, decayed)
        return ops.maximum(lr, self.min_lr)

    def get_config(self):
        return dict(peak_lr=self.peak_lr, warmup_steps=self.warmup_steps,
                    steps_per_epoch=self.steps_per_epoch, decay_rate=self.decay_rate,
                    start_lr=self.start_lr, min_lr=self.min_lr)


@keras.saving.register_keras_serializable(package="layerkit")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """One-cycle (Smith 2018): linear rise to `peak_lr` over `warmup_steps`, then linear
    fall to `min_lr` at `total_steps` (the triangular form airbench uses)."""

    def __init__(self, peak_lr, total_steps, warmup_steps, start_lr=None, min_lr=0.0):
        self.peak_lr = float(peak_lr)
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = max(1, int(warmup_steps))
        self.start_lr = self.peak_lr / 25 if start_lr is None else float(start_lr)
        self.min_lr = float(min_lr)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        up = self.start_lr + (self.peak_lr - self.start_lr) * step / self.warmup_steps
        frac = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
        down = self.peak_lr + (self.min_lr - self.peak_lr) * ops.minimum(frac, 1.0)
        return ops.where(step < self.warmup_steps, up, down)

    def get_config(self):
        return dict(peak_lr=self.peak_lr, total_steps=self.total_steps,
                    warmup_steps=self.warmup_steps, start_lr=self.start_lr, min_lr=self.min_lr)


@keras.saving.register_keras_serializable(package="layerkit")
class PiecewiseLinear(keras.optimizers.schedules.LearningRateSchedule):
    """`start_lr` at step 0, linear to `peak_lr` at `warmup_steps` (a float; 0 = start at the
    peak), linear to `end_lr` at `total_steps`, then flat (airbench's ``np.interp`` schedule)."""

    def __init__(self, peak_lr, total_steps, warmup_steps=0.0, start_lr=0.0, end_lr=0.0):
        self.peak_lr = float(peak_lr)
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = float(warmup_steps)
        self.start_lr = float(start_lr)
        self.end_lr = float(end_lr)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = self.warmup_steps
        up = self.start_lr + (self.peak_lr - self.start_lr) * step / max(warm, 1e-9)
        frac = ops.clip((step - warm) / max(self.total_steps - warm, 1.0), 0.0, 1.0)
        down = self.peak_lr + (self.end_lr - self.peak_lr) * frac
        return ops.where(step < warm, up, down)

    def get_config(self):
        return dict(peak_lr=self.peak_lr, total_steps=self.total_steps, warmup_steps=self.warmup_steps,
                    start_lr=self.start_lr, end_lr=self.end_lr)


def make_schedule(config, steps_per_epoch: int):
    """The schedule a `Config` asks for, in optimizer steps."""
    total = config.epochs * steps_per_epoch
    warmup = int(round(config.warmup_epochs * steps_per_epoch))
    name = config.schedule
    if name == "constant":
        return config.lr
    if name == "step":
        bounds = [int(e * steps_per_epoch) for e in config.step_epochs]
        values = [config.lr * config.step_factor**i for i in range(len(bounds) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(bounds, values) if bounds else config.lr
    if name == "cosine":
        if warmup:
            return keras.optimizers.schedules.CosineDecay(
                0.0, max(total - warmup, 1), alpha=config.min_lr / config.lr,
                warmup_target=config.lr, warmup_steps=warmup)
        return keras.optimizers.schedules.CosineDecay(config.lr, max(total, 1), alpha=config.min_lr / config.lr)
    if name == "warmup_exp":
        return WarmupExponential(config.lr, warmup, steps_per_epoch, config.decay_rate, min_lr=config.min_lr)
    if name == "linear":
        return PiecewiseLinear(config.lr, total, config.warmup_epochs * steps_per_epoch, config.start_lr, config.min_lr)
    if name == "onecycle":
        return OneCycle(config.lr, total, warmup or math.ceil(0.25 * total), min_lr=config.min_lr)
    raise ValueError(f"Unknown schedule {name!r}")


def lr_at(schedule, step: int) -> float:
    if callable(schedule):
        return float(ops.convert_to_numpy(schedule(step)))
    return float(schedule)
