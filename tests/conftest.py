import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
# One persistent compilation cache for the whole session, as a user's runs have one by default
# (layerkit.training.compilation): made empty by the controlling process (pytest_configure below),
# shared by the xdist workers, the CLI processes the tests start and the workers' own compilations,
# removed at the end. A program compiled by one test is loaded by the next one that compiles it
# (the same executable, so the same bits); tests about the cache set their own folder.
SESSION_CACHE = "LAYERKIT_TEST_SESSION_CACHE"
os.environ["LAYERKIT_CACHE_DIR"] = os.environ.get(SESSION_CACHE) or "off"
# Side files of shards layerkit did not write go to a per-user cache: the session's, never ~/.cache.
os.environ["LAYERKIT_RECORDS_CACHE"] = os.path.join(
    os.environ.get(SESSION_CACHE) or os.path.join(os.environ.get("TMPDIR", "/tmp"), "layerkit-test-records"),
    "records")

import keras  # noqa: E402
import pytest  # noqa: E402


def pytest_configure(config):
    import tempfile

    if SESSION_CACHE in os.environ:  # an xdist worker (its controller made the folder), or a nested run
        _use_session_cache()
        return
    folder = tempfile.mkdtemp(prefix="layerkit-test-jax-cache-")
    config._layerkit_session_cache = folder
    os.environ[SESSION_CACHE] = os.environ["LAYERKIT_CACHE_DIR"] = folder
    os.environ["LAYERKIT_RECORDS_CACHE"] = os.path.join(folder, "records")
    _use_session_cache()


def pytest_unconfigure(config):
    import shutil

    folder = getattr(config, "_layerkit_session_cache", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _use_session_cache():
    from layerkit.training.compilation import use_persistent_cache

    use_persistent_cache()


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    keras.utils.clear_session()
    keras.utils.set_random_seed(0)
    yield


def tensorboard_scalars(logdir) -> dict:
    """{tag: [(step, value), ...]} of a run's event files, as TensorBoard's own reader shows them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited (a killed writer's, as its temporary files name it)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="session")
def _cloud_servers():
    """moto's S3 server and fake-gcs-server on 127.0.0.1, for this worker's whole session; their
    variables are set in os.environ (so CLI processes the tests start inherit them)."""
    from tests import cloud_servers

    servers = {"s3": cloud_servers.start_s3(), "gs": cloud_servers.start_gcs()}
    saved = {k: os.environ.get(k) for s in servers.values() for k in s.env}
    for s in servers.values():
        os.environ.update(s.env)
    yield servers
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    for s in servers.values():
        s.stop()


@pytest.fixture(params=["s3", "gs"])
def bucket(request, _cloud_servers) -> str:
    """A new empty bucket on a local test server: ``s3://NAME`` (moto) or ``gs://NAME`` (fake-gcs-server)."""
    return _cloud_servers[request.param].make_bucket()


@pytest.fixture
def s3_bucket(_cloud_servers) -> str:
    """A new empty bucket on the local S3 server (moto): ``s3://NAME``."""
    return _cloud_servers["s3"].make_bucket()
