"""PartialDirac: conv kernels whose first filters start as the identity (airbench's init)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="layerkit")
class PartialDirac(keras.initializers.Initializer):
    """Conv kernels (kh, kw, in, out): filters j < min(in, out) are the identity on channel j
    (1 at the centre tap), the others uniform(+-1/sqrt(fan_in)) (PyTorch's default)."""

    def __init__(self, seed=None):
        self.seed = seed
        self._base = keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform", seed=seed)

    def __call__(self, shape, dtype=None):
        if len(shape) != 4:
            raise ValueError(f"PartialDirac initialises 2D conv kernels (kh, kw, in, out). Received: shape={shape}")
        kh, kw, cin, cout = shape
        kernel = self._base(shape, dtype=dtype)
        d = min(cin, cout)
        identity = ops.zeros((kh, kw, cin, d), dtype=kernel.dtype)
        identity = ops.slice_update(identity, (kh // 2, kw // 2, 0, 0),
                                    ops.expand_dims(ops.expand_dims(ops.eye(cin, d, dtype=kernel.dtype), 0), 0))
        return ops.concatenate([identity, kernel[..., d:]], axis=-1)

    def get_config(self):
        return {"seed": self.seed}
