"""Data-parallel and multi-process training on JAX through `keras.distribution`.

One path for every machine: find the devices, print them, and when there is more than one
(`--devices N`, or several processes) train with `keras.distribution.DataParallel`, the
global batch split evenly across the devices. Past one machine, `setup` starts JAX's
distributed runtime first (`--coordinator HOST:PORT --num-processes P --process-id I`, or
the environment variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
``JAX_PROCESS_ID``, or what the cluster's scheduler tells each process: SLURM, Open MPI,
Kubernetes and Cloud TPU, detected as JAX detects them); each process then reads its own shard
of the training data and feeds ``batch_size / P`` images a step, and only process 0 (the
chief) writes the record.

On CPU, processes exchange gradients through JAX's gloo collectives
(``jax_cpu_collectives_implementation="gloo"``), which is how two processes on 127.0.0.1
are tested.

    layerkit train --devices 4 ...
    layerkit train --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0 ...
"""

import contextlib
import os
import sys
import threading
from dataclasses import dataclass, field

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"  # read by JAX itself too
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


class DistributionError(ValueError):
    """Settings that cannot make a data-parallel run (bad counts, an unreachable coordinator)."""


@dataclass
class Topology:
    """Where this process stands: its index among the processes and the devices it trains on."""

    process_index: int = 0
    process_count: int = 1
    devices: list = field(default_factory=list)  # every device of the run, all processes
    local_devices: list = field(default_factory=list)  # this process's share of `devices`
    distribution: object = None  # a keras DataParallel, or None for one device
    peer_watch: object = None  # a PeerWatch when there are several processes
    launch: object = None  # the resolved Launch
    processes: list = field(default_factory=list)  # on process 0: every process's host, pid and devices

    @property
    def is_chief(self) -> bool:
        """Process 0: the one that writes checkpoints, CSV, TensorBoard and reports."""
        return self.process_index == 0

    @property
    def distributed(self) -> bool:
        return self.distribution is not None

    def describe(self) -> str:
        kinds = sorted({d.platform for d in self.devices})
        text = (f"{len(self.devices)} device(s) ({', '.join(kinds)}): "
                f"{', '.join(str(d) for d in self.local_devices)}")
        if self.process_count > 1:
            text += f" on this process, {self.process_index} of {self.process_count}"
        return text


# === How a run is launched ===


@dataclass(frozen=True)
class Launch:
    """How a run is launched, not what it is: the devices and processes of this launch.

    The CLI builds one from its flags (`--devices`, `--coordinator`, `--num-processes`,
    `--process-id`, `--init-timeout`); it applies to that launch only, a resume included, and
    is never written into the run's config.json. `resolved()` fills in JAX's environment
    variables and checks every field.
    """

    devices: int = 0  # devices per process (0 = all local accelerators, or the one CPU)
    coordinator: str = ""  # HOST:PORT of process 0 ("" = one process)
    num_processes: int = 1
    process_id: int = 0  # 0 writes the record
    init_timeout: float = 60.0  # seconds to wait for every process to join, and for a silent peer
    cluster: str = ""  # the scheduler the settings came from ("slurm", "ompi", ...); "" = flags or JAX_*

    def resolved(self, environ=None) -> "Launch":
        if isinstance(self.devices, bool) or not isinstance(self.devices, int) or self.devices < 0:
            raise DistributionError(f"devices must be >= 0 (0 = all local accelerators). Received: {self.devices!r}")
        if not self.init_timeout > 0:
            raise DistributionError(f"init_timeout must be > 0 seconds. Received: {self.init_timeout!r}")
        coordinator, num_processes, process_id = launch_settings(
            self.coordinator, self.num_processes, self.process_id, environ)
        cluster = self.cluster
        if num_processes == 1 and not coordinator and (environ is None or environ is os.environ):
            detected = detect_cluster(self.init_timeout)
            if detected is not None and detected[2] > 1:
                cluster, coordinator, num_processes, process_id = detected
        return Launch(self.devices, coordinator, num_processes, process_id, float(self.init_timeout), cluster)

    def describe(self) -> dict:
        """This launch, as run.json records it."""
        return {"processes": self.num_processes, "process_id": self.process_id,
                "coordinator": self.coordinator or None,
                "from": self.cluster or ("flags or JAX_* variables" if self.num_processes > 1 else "one process"),
                "devices_per_process": self.devices or "all local accelerators (or one CPU)"}


# === Multi-process runtime ===


def launch_settings(coordinator="", num_processes=1, process_id=0, environ=None) -> tuple:
    """(coordinator, num_processes, process_id) from the flags, else the environment variables."""
    environ = os.environ if environ is None else environ
    coordinator = coordinator or environ.get(ENV_COORDINATOR, "")
    if num_processes in (None, 0, 1) and environ.get(ENV_NUM_PROCESSES):
        num_processes = _env_int(environ, ENV_NUM_PROCESSES)
    if process_id in (None, 0) and environ.get(ENV_PROCESS_ID):
        process_id = _env_int(environ, ENV_PROCESS_ID)
    num_processes, process_id = int(num_processes or 1), int(process_id or 0)
    if num_processes < 1:
        raise DistributionError(f"num_processes must be >= 1. Received: num_processes={num_processes}")
    if not 0 <= process_id < num_processes:
        raise DistributionError(f"process_id must be in [0, {num_processes}) for {num_processes} "
                                f"process(es). Received: process_id={process_id}")
    if num_processes > 1 and not coordinator:
        raise DistributionError(f"{num_processes} processes need a coordinator: pass --coordinator "
                                f"HOST:PORT (process 0's address) or set {ENV_COORDINATOR}")
    if coordinator:
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise DistributionError(f"coordinator must be HOST:PORT. Received: {coordinator!r}")
    return coordinator, num_processes, process_id


def detect_cluster(timeout: float = 60.0):
    """(name, coordinator, num_processes, process_id) that the cluster scheduler this process
    runs under gives it, detected as `jax.distributed.initialize()` detects it (SLURM inside an
    `srun` step, Open MPI's `mpirun`, a Kubernetes indexed Job, Cloud TPU); None outside one.
    `JAX_COORDINATOR_PORT` overrides the port JAX derives (SLURM: from the job id)."""
    try:
        from jax._src.clusters import ClusterEnv
    except ImportError:  # a JAX that moved its cluster detection: flags and JAX_* still work
        return None
    for env in ClusterEnv._cluster_types:
        if getattr(env, "opt_in_only_method", False) or not env.is_env_present():
            continue
        try:
            coordinator = env.get_coordinator_address(timeout_secs=int(timeout),
                                                      override_coordinator_port=os.environ.get("JAX_COORDINATOR_PORT"))
            return env.name or env.__name__, coordinator, int(env.get_process_count()), int(env.get_process_id())
        except (KeyError, ValueError, TypeError) as err:
            raise DistributionError(f"layerkit found a {env.name or env.__name__} cluster environment but "
                                    f"could not read its settings ({err!r}); pass --coordinator HOST:PORT "
                                    "--num-processes P --process-id I instead") from None
    return None


def _env_int(environ, name) -> int:
    try:
        return int(environ[name])
    except ValueError:
        raise DistributionError(f"{name} must be an integer. Received: {environ[name]!r}") from None


def initialize_processes(coordinator: str, num_processes: int, process_id: int,
                         timeout: float = 60.0) -> None:
    """Start JAX's distributed runtime, or exit with a clear message within `timeout` seconds.

    JAX aborts the process (no Python exception) when the coordinator never answers, after
    its own timeout; a watchdog thread fires first, says what was waited for, and exits
    with status 3. Call before anything touches a JAX device.
    """
    import jax

    if jax.distributed.is_initialized():
        return
    if timeout <= 0:
        raise DistributionError(f"init_timeout must be > 0 seconds. Received: {timeout}")
    if _platform_is_cpu():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    waited_for = (f"all {num_processes} processes to join at {coordinator}" if process_id == 0
                  else f"the coordinator {coordinator} (process 0) to answer")
    print(f"layerkit: process {process_id} of {num_processes}: connecting to {coordinator} "
          f"(timeout {timeout:g} s)", file=sys.stderr, flush=True)
    done = threading.Event()

    def watchdog():
        if not done.wait(timeout):
            print(f"layerkit train: error: process {process_id} of {num_processes} waited "
                  f"{timeout:g} s for {waited_for}, and gave up. Check that every process runs "
                  f"with the same --coordinator and --num-processes, that process 0 started, and "
                  f"that its port is reachable (raise init_timeout for slow starts).",
                  file=sys.stderr, flush=True)
            os._exit(3)  # JAX's C++ client would otherwise abort later with a core dump

    threading.Thread(target=watchdog, name="layerkit-init-watchdog", daemon=True).start()
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id,
                                   initialization_timeout=int(timeout) + 30)
    finally:
        done.set()


_abort_handler = None  # the C-callable SIGABRT handler, kept alive while installed


def exit_4_on_abort(me: int, n: int) -> None:
    """Turn the SIGABRT of JAX's coordination client into `lost_peer`'s exit 4.

    When the coordinator's process dies, the client's error-polling thread in every other
    process calls abort() at once (absl's fatal log, a C++ stack, status 134): before any
    Python code of ours can run, and JAX offers no Python hook (its `missed_heartbeat_callback`
    cannot be given a Python callable). A C-level handler installed through ctypes runs on that
    thread, takes the GIL, says which process is gone and exits 4 (absl has printed its fatal
    message and stack by then). Process 0 runs the coordination service itself, so it never
    loses it; there the abort comes from the service declaring another process dead (after
    JAX's heartbeat timeout, when `PeerWatch` has not named it first)."""
    global _abort_handler
    import ctypes
    import signal

    if _abort_handler is not None:
        return
    who = "process 0 (it runs the coordinator)" if me else "another process"
    libc = ctypes.CDLL(None, use_errno=True)

    @ctypes.CFUNCTYPE(None, ctypes.c_int)
    def handler(_signum):
        lost_peer(me, n, who, "JAX's coordination client reported a fatal error and aborted")

    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.signal(signal.SIGABRT, ctypes.cast(handler, ctypes.c_void_p))
    _abort_handler = handler


def preemption_sync_point(topology):
    """With several processes, JAX's `reached_preemption_sync_point(step)`: True at the one step
    all processes stop at after a SIGTERM reached any of them (its preemption service, started
    with the distributed runtime, takes SIGTERM); None for one process (its own SIGTERM
    handler decides, `stop.StopSignals`)."""
    if topology.process_count <= 1:
        return None
    from jax._src import distributed
    from jax.experimental import multihost_utils

    if distributed.global_state.preemption_sync_manager is None:  # the service turned off: epoch ends only
        return None
    return multihost_utils.reached_preemption_sync_point


def lost_peer(me: int, n: int, who: str, why: str):
    """Say which process of the run stopped responding, and end this one with status 4."""
    print(f"\nlayerkit train: error: process {me} of {n}: {who} of this run stopped "
          f"responding ({why}); it died or its machine is unreachable. Stopping this process "
          f"too (status {PeerWatch.EXIT_STATUS}). The last checkpoint is intact: restart every "
          "process with `layerkit train --resume --out DIR` and the same launch flags.",
          file=sys.stderr, flush=True)
    os._exit(PeerWatch.EXIT_STATUS)  # the collectives would wait for the dead peer


def _platform_is_cpu() -> bool:
    # Decided before the backends start: JAX_PLATFORMS, else whether a GPU/TPU plugin exists.
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms:
        return platforms.split(",")[0].strip() == "cpu"
    try:
        from importlib.metadata import distributions
        names = {d.metadata["Name"] or "" for d in distributions()}
    except Exception:  # noqa: BLE001 - metadata is best effort
        return True
    return not any(n.startswith(("jax-cuda", "jax_cuda", "jax-rocm", "libtpu")) for n in names)


# === Devices ===


def select_devices(requested: int, process_count: int) -> tuple[list, list]:
    """(all devices of the run, this process's): `requested` per process, 0 = the default
    (every local accelerator, or one CPU)."""
    import jax

    local = jax.local_devices()
    if requested < 0:
        raise DistributionError(f"devices must be >= 0 (0 = all local accelerators). Received: {requested}")
    if requested == 0:
        requested = 1 if local[0].platform == "cpu" else len(local)
    if requested > len(local):
        raise DistributionError(
            f"--devices {requested} asked for more devices than this process has: found "
            f"{len(local)} ({', '.join(str(d) for d in local)})")
    by_process = {}
    for d in jax.devices():
        by_process.setdefault(d.process_index, []).append(d)
    chosen = [d for p in sorted(by_process) for d in sorted(by_process[p], key=lambda d: d.id)[:requested]]
    if len(chosen) != requested * process_count:
        raise DistributionError(f"expected {requested} device(s) in each of {process_count} processes; "
                                f"found {len(chosen)} in all")
    return chosen, local[:requested]


def setup(config, launch: Launch, verbose: bool = True) -> Topology:
    """Start the runtime `launch` asks for, choose the devices, set the keras distribution.

    Raises `DistributionError` when `config`'s global batch does not split evenly over the devices.
    """
    launch = launch.resolved()
    if launch.num_processes > 1:
        initialize_processes(launch.coordinator, launch.num_processes, launch.process_id, launch.init_timeout)
    import jax
    import keras

    process_index, process_count = jax.process_index(), jax.process_count()
    devices, local = select_devices(launch.devices, process_count)
    if config.batch_size % len(devices):
        raise DistributionError(
            f"batch_size must be divisible by the number of devices to split the global batch "
            f"evenly. Received: batch_size={config.batch_size}, devices={len(devices)} "
            f"({len(local)} per process x {process_count} process(es))")
    distribution = None
    if len(devices) > 1:
        # Each process feeds its own shard (the Pipeline's process slice): no auto-sharding.
        distribution = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    keras.distribution.set_distribution(distribution)
    topology = Topology(process_index, process_count, devices, local, distribution, launch=launch)
    if process_count > 1:
        exit_4_on_abort(process_index, process_count)
        topology.processes = _roles(process_index, process_count, local, launch.init_timeout)
        topology.peer_watch = PeerWatch(process_index, process_count, launch.init_timeout).start()
    if verbose:
        print(f"layerkit: found {topology.describe()}; "
              + (f"data-parallel, global batch {config.batch_size or 'fitted to the data'}"
                 + (f" = {config.batch_size // len(devices)} per device" if config.batch_size else "")
                 if distribution else "one device"), file=sys.stderr, flush=True)
    return topology


def _roles(me: int, n: int, local: list, timeout: float) -> list:
    """Each process tells the coordination service its host, pid and devices; process 0
    returns them all (for run.json), the others an empty list."""
    import json
    import socket

    from jax._src import distributed

    client = distributed.global_state.client
    client.key_value_set(f"layerkit/role/{me}", json.dumps(
        {"process_id": me, "host": socket.gethostname(), "pid": os.getpid(), "devices": [str(d) for d in local]}))
    if me != 0:
        return []
    return [json.loads(client.blocking_key_value_get(f"layerkit/role/{p}", int(timeout * 1000))) for p in range(n)]


# === Peers that die ===


class PeerWatch:
    """Declares a peer dead when it has been silent for `timeout` seconds, says which one, and
    ends this process with status 4.

    Without it, a process whose peer died waits in the next collective until JAX's own
    heartbeat check aborts it (SIGABRT, ~100 s later, no word from layerkit). Each process
    bumps a counter in the coordination service's key-value store every `interval` seconds
    from a daemon thread (so a long compilation or epoch does not look like death); a peer
    whose counter stands still for `timeout` seconds, or a coordinator that cannot be reached,
    is reported. A process that finishes says so (`done()`), and is then no longer watched.
    """

    EXIT_STATUS = 4

    def __init__(self, process_id: int, num_processes: int, timeout: float, interval: float = 1.0):
        from jax._src import distributed

        self.client = distributed.global_state.client
        self.me, self.n = process_id, num_processes
        self.timeout, self.interval = float(timeout), float(interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="layerkit-peer-watch", daemon=True)

    def start(self) -> "PeerWatch":
        self._thread.start()
        return self

    def done(self) -> None:
        """This process ended its part normally: stop watching and tell the others."""
        self._stop.set()
        try:
            self.client.key_value_set(self._key(self.me), "done", allow_overwrite=True)
        except Exception:  # noqa: BLE001 - the others may have gone already
            pass

    def _key(self, process) -> str:
        return f"layerkit/alive/{process}"

    def after_failure(self, err: BaseException, grace: float = 3.0) -> None:
        """Training raised `err` (a failed collective raises whatever the step was doing): if a
        peer is gone, say which and exit 4 at once, rather than wait `timeout` for its silence.
        Returns when every peer is alive (the failure is this process's own)."""
        who = self.dead_peer(grace)
        if who is not None:
            self._stop.set()
            lost_peer(self.me, self.n, who, f"training failed with {type(err).__name__}: "
                      f"{str(err).splitlines()[0][:200] if str(err) else ''}")

    def dead_peer(self, grace: float = 3.0):
        """The first peer whose heartbeat stays still for `grace` seconds ("process I"), the
        coordinator when it no longer answers, or None when every peer is alive or done."""
        import time

        try:
            self.client.key_value_set(self._key(self.me), f"failing-{time.monotonic()}", allow_overwrite=True)
        except Exception:  # noqa: BLE001 - the coordination service itself is gone
            return "process 0 (it runs the coordinator)"

        def beats():
            values = {}
            for p in range(self.n):
                if p != self.me:
                    try:
                        values[p] = self.client.key_value_try_get(self._key(p))
                    except Exception:  # noqa: BLE001 - not written yet
                        values[p] = None
            return values

        first, alive = beats(), set()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            time.sleep(min(0.25, self.interval / 4))
            now = beats()
            alive |= {p for p in first if now[p] != first[p] or now[p] == "done"}
            if len(alive) == len(first):
                return None
        return f"process {min(set(first) - alive)}"

    def _run(self) -> None:
        import time

        beat = 0
        seen = {p: (None, time.monotonic()) for p in range(self.n) if p != self.me}
        while not self._stop.wait(self.interval):
            beat += 1
            try:
                self.client.key_value_set(self._key(self.me), str(beat), allow_overwrite=True)
            except Exception as err:  # noqa: BLE001 - the coordination service itself is gone
                if not self._stop.is_set():
                    self._fail("process 0 (it runs the coordinator)", f"the coordinator stopped answering: "
                               f"{str(err).splitlines()[0][:200]}")
                return
            now = time.monotonic()
            for p, (value, since) in list(seen.items()):
                try:
                    current = self.client.key_value_try_get(self._key(p))
                except Exception:  # noqa: BLE001 - not written yet
                    current = None
                if current == "done":
                    seen.pop(p)
                elif current != value:
                    seen[p] = (current, now)
                elif now - since > self.timeout and not self._stop.is_set():
                    self._fail(f"process {p}", f"silent for {now - since:.0f} s")
                    return

    def _fail(self, who: str, why: str) -> None:
        lost_peer(self.me, self.n, who, why)


# === One process's view of replicated state ===


def _all_variables(model) -> list:
    variables = list(model.variables)
    if getattr(model, "optimizer", None) is not None:
        variables += list(model.optimizer.variables)
    for metric in getattr(model, "metrics", []):
        variables += list(metric.variables)
    seen, unique = set(), []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            unique.append(v)
    return unique


def _local_value(value):
    sharding = getattr(value, "sharding", None)
    if sharding is None or len(sharding.device_set) == 1:
        return value
    if not value.sharding.is_fully_replicated:
        raise DistributionError(f"a variable of shape {value.shape} is sharded, not replicated; "
                                "data-parallel runs keep every variable whole on every device")
    return value.addressable_shards[0].data


def _make_local(variable):
    # Keras re-shards every assignment to a variable's layout: drop it with the mesh.
    variable._value = _local_value(variable._value)
    variable._layout = None


@contextlib.contextmanager
def local_view(model):
    """Within the block, `model`'s variables hold this process's copy and no distribution is
    set, so one process alone can save or evaluate (no collectives)."""
    import keras

    previous = keras.distribution.distribution()
    variables = _all_variables(model)
    originals = [(v._value, getattr(v, "_layout", None)) for v in variables]
    try:
        for v in variables:
            _make_local(v)
        keras.distribution.set_distribution(None)
        yield model
    finally:
        for v, (value, layout) in zip(variables, originals):
            v._value, v._layout = value, layout
        keras.distribution.set_distribution(previous)


def localize(model):
    """Make `model` a one-device model for good (after training): local copies, no distribution."""
    import keras

    for v in _all_variables(model):
        _make_local(v)
    keras.distribution.set_distribution(None)
    for name in ("predict_function", "test_function", "train_function"):
        setattr(model, name, None)
    return model
