"""A `personas run` worker as a subprocess, for tests that need the real thing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from streams.broker import free_port

__all__ = ["WorkerProcess", "running_workers"]


class WorkerProcess:
    """Start, stop (SIGTERM) or kill (SIGKILL) a worker; its output goes to a log file.

    The worker leads a process group of its own (its feature processes belong to it), so that
    `signal_group` reaches the whole of it, as the loss of its host would.
    """

    def __init__(self, env: dict[str, str], bootstrap: str, log_path: Path, *args: str) -> None:
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PERSONAS_")},
            **env,
            "PERSONAS_BROKER": bootstrap,
            "PERSONAS_WORKER__WEB_PORT": str(self.port),
        }
        self.args = args or ("--no-rebuild",)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "run", *self.args],
                env=self.env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return self

    def wait_ready(self, timeout: float = 60.0) -> WorkerProcess:
        """Wait until the worker serves /health (any status): it is up and handles SIGTERM."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/health"
        while True:
            assert self.process is not None and self.process.poll() is None, self.log()[-3000:]
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return self
            except urllib.error.HTTPError:  # 503: up, but something is unhealthy
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker not serving {url} after {timeout}s") from None
                time.sleep(0.1)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; return the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def signal_group(self, signum: signal.Signals) -> None:
        """Send `signum` to the worker and every process it started."""
        assert self.process is not None
        os.killpg(self.process.pid, signum)
        if signum == signal.SIGKILL:
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> WorkerProcess:
        # Up and serving: a test that stops it at once must not catch it in interpreter start,
        # before any handler exists (only `personas run` itself can make that case clean).
        return self.start().wait_ready()

    def __exit__(self, *_: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()


@contextmanager
def running_workers(
    env: dict[str, str], bootstrap: str, log_dir: Path, count: int = 2
) -> Iterator[tuple[WorkerProcess, ...]]:
    """`count` workers of one app, as on `count` hosts, each up and logging to `log_dir/wN.log`;
    stopped at the end unless the test stopped or killed them."""
    with ExitStack() as stack:
        yield tuple(
            stack.enter_context(WorkerProcess(env, bootstrap, log_dir / f"w{n}.log"))
            for n in range(1, count + 1)
        )
