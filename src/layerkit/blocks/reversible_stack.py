"""`ReversibleStack`: RevBlocks trained without storing their activations.

The backward pass is written by hand (Gomez et al. 2017, Algorithm 1): only the stack's
output is kept; walking the blocks from the last, each block's input is reconstructed
from its output (x2 = y2 - G(y1), x1 = y1 - F(x2)) while the vector-Jacobian products of
G and F give the gradients. On JAX this is one `jax.custom_vjp` over the whole stack,
with the per-block weights stacked and the blocks run by `lax.scan`, so that XLA cannot
hoist the recomputation into the forward pass and compiled memory stays flat in depth
(see ../shared/design/revnet.md). Other backends fall back to plain backprop.

Measured (tests/blocks/test_reversible_stack.py, docs/benchmarks.md): gradients equal plain
autodiff to ~1e-15 relative in float64 and ~1e-6 in float32; compiled temporary memory of a
RevNet training step is flat in depth (RevNet-110/RevNet-38: 1.21 at batch 64 on CPU).
"""

import warnings

import keras

from layerkit.blocks import _args
from layerkit.blocks.conv_block import ConvBlock
from layerkit.blocks.rev_block import RevBlock


def _reversible_scan(f_layer, g_layer, training, axis):
    """The stack as a pure function with a custom VJP.

    ``run(fw, fnt, gw, gnt, x) -> (y, new_fnt, new_gnt)`` where ``fw``/``gw`` are F's and
    G's trainable weights and ``fnt``/``gnt`` their BatchNorm statistics, each a list of
    arrays with a leading block axis; ``f_layer``/``g_layer`` (the first block's F and G)
    serve as the template every block is run with. The new statistics are returned, not
    assigned: the caller assigns them once. Gradients of the statistics are zero.
    """
    import jax
    import jax.numpy as jnp

    def split(h):
        return jnp.split(h, 2, axis=axis)

    def merge(a, b):
        return jnp.concatenate([a, b], axis=axis)

    def F(w, nt, h):
        return f_layer.stateless_call(w, nt, h, training=training)

    def G(w, nt, h):
        return g_layer.stateless_call(w, nt, h, training=training)

    def forward(fw, fnt, gw, gnt, x):
        # The halves travel separately through the scan: no concatenation per block.
        def step(halves, params):
            h1, h2 = halves
            fw_i, fnt_i, gw_i, gnt_i = params
            f_out, fnt_new = F(fw_i, fnt_i, h2)
            y1 = h1 + f_out
            g_out, gnt_new = G(gw_i, gnt_i, y1)
            return (y1, h2 + g_out), (fnt_new, gnt_new)

        (y1, y2), (fnt_new, gnt_new) = jax.lax.scan(step, tuple(split(x)), (fw, fnt, gw, gnt))
        return merge(y1, y2), fnt_new, gnt_new

    @jax.custom_vjp
    def run(fw, fnt, gw, gnt, x):
        return forward(fw, fnt, gw, gnt, x)

    def run_fwd(fw, fnt, gw, gnt, x):
        y, fnt_new, gnt_new = forward(fw, fnt, gw, gnt, x)
        # The only activation kept for the backward pass is the stack's output.
        return (y, fnt_new, gnt_new), (fw, fnt, gw, gnt, y)

    def run_bwd(residuals, cotangents):
        fw, fnt, gw, gnt, y = residuals
        dy = cotangents[0]  # the statistics' cotangents are ignored: they are not trained

        def step(carry, params):
            y1, y2, dy1, dy2 = carry
            fw_i, fnt_i, gw_i, gnt_i = params
            # G: recompute G(y1), reconstruct x2, and pull dy2 back through G.
            g_out, g_vjp = jax.vjp(lambda w, z: G(w, gnt_i, z)[0], gw_i, y1)
            x2 = y2 - g_out
            dgw, dy1_from_g = g_vjp(dy2.astype(g_out.dtype))
            dy1 = dy1 + dy1_from_g
            # F: recompute F(x2), reconstruct x1, and pull dy1 back through F.
            f_out, f_vjp = jax.vjp(lambda w, z: F(w, fnt_i, z)[0], fw_i, x2)
            x1 = y1 - f_out
            dfw, dx2_from_f = f_vjp(dy1.astype(f_out.dtype))
            return (x1, x2, dy1, dy2 + dx2_from_f), (dfw, dgw)

        (_, _, dx1, dx2), (dfw, dgw) = jax.lax.scan(
            step, (*split(y), *split(dy)), (fw, fnt, gw, gnt), reverse=True
        )
        dx = merge(dx1, dx2)
        zeros = lambda tree: jax.tree.map(jnp.zeros_like, tree)  # noqa: E731
        return dfw, zeros(fnt), dgw, zeros(gnt), dx

    run.defvjp(run_fwd, run_bwd)
    return run


@keras.saving.register_keras_serializable(package="layerkit")
class ReversibleStack(ConvBlock):
    """`blocks` reversible `RevBlock`s of `filters` channels, trained in constant memory.

    The input must have `filters` channels (a stack keeps the shape: downsampling between
    stages is a separate, non-reversible layer). With ``reversible=True`` on the JAX
    backend, gradients are computed by reconstructing each block's input from its output
    instead of storing activations; BatchNorm moving statistics inside F and G are
    updated once per step, as with plain backprop. ``reversible=False`` is the same
    network, with the same weights, trained by plain autodiff.

    Args:
        blocks: number of RevBlocks.
        filters: channels of the input and output (both halves together).
        bottleneck: F and G are 1x1 -> 3x3 -> 1x1 bottlenecks.
        reversible: use the memory-saving backward pass (JAX only; elsewhere a warning
            is given and plain backprop is used).
        momentum, epsilon: BatchNorm settings of F and G.
        kernel_initializer, kernel_regularizer: for every convolution.
        data_format: "channels_last", "channels_first" or None (Keras's global setting).
    """

    def __init__(
        self,
        blocks,
        filters,
        bottleneck=False,
        reversible=True,
        momentum=0.9,
        epsilon=1e-5,
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        data_format=None,
        **kwargs,
    ):
        super().__init__(momentum=momentum, epsilon=epsilon, kernel_initializer=kernel_initializer,
                         kernel_regularizer=kernel_regularizer, data_format=data_format, **kwargs)
        self.blocks = _args.positive_int("blocks", blocks)
        self.filters = _args.positive_int("filters", filters)
        self.bottleneck = bool(bottleneck)
        self.reversible = bool(reversible)
        # Validates `filters` (even, or divisible by 8 for bottlenecks) with a clear error.
        self._block_config = dict(
            filters=self.filters, strides=1, bottleneck=self.bottleneck, **self.conv_block_config()
        )
        RevBlock(**self._block_config)
        self._custom_backward = self.reversible and keras.backend.backend() == "jax"
        if self.reversible and not self._custom_backward:
            warnings.warn(
                f"ReversibleStack's memory-saving backward pass needs the JAX backend; on "
                f"'{keras.backend.backend()}' it trains with plain backprop.",
                stacklevel=2,
            )

    # === Layers ===
    def build(self, input_shape):
        in_channels = _args.channels(input_shape, self.data_format, type(self).__name__)
        if in_channels != self.filters:
            raise ValueError(
                "A ReversibleStack keeps the shape: its input needs `filters` channels. "
                f"Received: filters={self.filters} for input shape {tuple(input_shape)}"
            )
        self.rev_blocks = []
        for i in range(self.blocks):
            block = RevBlock(**self._block_config, dtype=self.dtype_policy, name=f"block{i}")
            block.build(input_shape)
            self.rev_blocks.append(block)
        self.built = True

    # === Forward ===
    def call(self, inputs, training=None):
        if not self._custom_backward:
            x = inputs
            for block in self.rev_blocks:
                x = block(x, training=training)
            return x

        import jax.numpy as jnp

        def stacked(variables_of):
            per_block = [variables_of(block) for block in self.rev_blocks]
            return [jnp.stack([vs[j].value for vs in per_block]) for j in range(len(per_block[0]))]

        first = self.rev_blocks[0]
        params = (
            stacked(lambda b: b.f.trainable_variables),
            stacked(lambda b: b.f.non_trainable_variables),
            stacked(lambda b: b.g.trainable_variables),
            stacked(lambda b: b.g.non_trainable_variables),
        )
        run = _reversible_scan(first.f, first.g, bool(training), self._channel_axis)
        # Under mixed precision the halves are carried in float32 from block to block
        # (F and G still compute in the policy's dtype): reconstructing x1 = y1 - F(x2)
        # from a 16-bit y1 would lose what the 16-bit rounding of y1 threw away.
        carry_dtype = self.compute_dtype
        if keras.backend.standardize_dtype(carry_dtype) in ("float16", "bfloat16"):
            carry_dtype = "float32"
        y, fnt_new, gnt_new = run(*params, keras.ops.cast(inputs, carry_dtype))
        y = keras.ops.cast(y, self.compute_dtype)
        if training:
            for i, block in enumerate(self.rev_blocks):
                for v, new in zip(block.f.non_trainable_variables, fnt_new):
                    v.assign(new[i])
                for v, new in zip(block.g.non_trainable_variables, gnt_new):
                    v.assign(new[i])
        return y

    def inverse(self, outputs, training=False):
        """The input that gives `outputs`, reconstructed block by block from the last."""
        x = outputs
        for block in reversed(self.rev_blocks):
            x = block.inverse(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    # === Config ===
    def get_config(self):
        config = super().get_config()
        config.update(
            blocks=self.blocks,
            filters=self.filters,
            bottleneck=self.bottleneck,
            reversible=self.reversible,
        )
        return config
