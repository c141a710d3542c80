"""How much work XLA puts into compiling a run's programs, and where compiled programs are kept.

`fast_compile`: the scope of a run with ``Config.fast_compile`` (smoke runs). JAX's
``jax_disable_most_optimizations`` makes each compilation use XLA backend optimisation
level 0 and skip LLVM's expensive passes. It is a per-compilation option, not an XLA flag
read once when the backend starts, so it can be switched for one run and back. Measured on
2 CPU cores (docs/benchmarks.md, "`--smoke` wall time per recipe"): compilation takes about
half as long, the compiled steps run 1.3-1.5x slower, and numbers agree to rounding (the
uniform initialisers differ in the last bit, so a run is reproducible only with the same
setting).

`use_persistent_cache`: the command line keeps compiled programs on disk (JAX's persistent
compilation cache), so a second run of the same model and shapes loads them instead of
compiling. Its folder: ``$LAYERKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/layerkit/jax``
(``~/.cache/layerkit/jax``); ``LAYERKIT_CACHE_DIR=off`` turns it off, and a cache the user
set up for JAX (``JAX_COMPILATION_CACHE_DIR``) is left as it is. The library never turns it
on by itself: ``layerkit.train()`` from Python compiles as JAX is configured. Nothing is
evicted: the folder grows by about 1 MB per recipe and shape on a CPU; delete it to start
afresh. The cache is trusted code: keep it in a folder only you can write to.
"""

import contextlib
import os
from pathlib import Path

OFF = ("", "0", "off", "no", "false", "none")


@contextlib.contextmanager
def fast_compile(enabled: bool = True):
    """Within the block, XLA compiles with most optimisations off (when `enabled`).

    JAX keeps the executables of eager, op-by-op calls (an initialiser's random numbers) in
    memory under a key without this setting, so an op compiled before the block would run
    optimised inside it, and one compiled inside would run unoptimised after it: the same run
    would give other bits in a fresh process. Its in-memory caches are therefore cleared when
    the setting changes, on entry and on exit."""
    import jax

    previous = jax.config.values["jax_disable_most_optimizations"]
    wanted = bool(enabled) or previous
    if wanted == previous:
        yield
        return
    jax.clear_caches()
    jax.config.update("jax_disable_most_optimizations", wanted)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", previous)
        jax.clear_caches()


def cache_dir(environ=None) -> Path | None:
    """The persistent cache's folder from the environment, or None when it is off."""
    environ = os.environ if environ is None else environ
    chosen = environ.get("LAYERKIT_CACHE_DIR")
    if chosen is not None:
        return None if chosen.strip().lower() in OFF else Path(chosen).expanduser()
    base = environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(base) / "layerkit" / "jax"


def use_persistent_cache(environ=None) -> Path | None:
    """Keep compiled programs in `cache_dir()` (every program, however quick to compile).
    Returns the folder in use, or None (off, or the user's own JAX cache is set)."""
    import jax

    if jax.config.values["jax_compilation_cache_dir"]:
        return None  # the user's own JAX_COMPILATION_CACHE_DIR (or jax.config) wins
    path = cache_dir(environ)
    if path is None:
        return None
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return path
