"""Choose the Keras backend before Keras is imported.

layerkit is tuned and tested on JAX, so JAX is the default. A user who exported
``KERAS_BACKEND`` (or configured ``~/.keras/keras.json`` *and* exported nothing) keeps
their choice only when they set the environment variable: we never override it.
"""

import os
import sys
import warnings

DEFAULT_BACKEND = "jax"


def select_default_backend() -> str:
    """Set ``KERAS_BACKEND=jax`` unless the user chose one. Returns the backend in force."""
    chosen = os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)
    keras_mod = sys.modules.get("keras")
    if keras_mod is not None:
        active = keras_mod.backend.backend()
        if active != chosen:
            warnings.warn(
                f"Keras was imported before layerkit with backend '{active}'; "
                f"layerkit is tested on '{DEFAULT_BACKEND}'. Set KERAS_BACKEND before "
                "importing keras to choose the backend.",
                stacklevel=3,
            )
        return active
    return chosen
