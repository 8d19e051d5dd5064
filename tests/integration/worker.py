"""A `personas run` worker as a subprocess, for tests that need the real thing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from config.settings import Settings
from streams.broker import free_port
from streams.ops.groups import describe_group
from streams.ops.offsets import admin_client
from streams.topics import stage_group

__all__ = ["WorkerProcess", "group_members", "running_workers"]


class WorkerProcess:
    """Start, stop (SIGTERM) or kill (SIGKILL) a worker; its output goes to a log file.

    The worker leads a process group of its own (its feature processes belong to it), so that
    `signal_group` reaches the whole of it, as the loss of its host would.
    """

    def __init__(
        self, env: dict[str, str], bootstrap: str, log_path: Path, *args: str,
        cpus: str | None = None,
    ) -> None:  # fmt: skip
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PERSONAS_")},
            **env,
            "PERSONAS_BROKER": bootstrap,
            "PERSONAS_WORKER__WEB_PORT": str(self.port),
        }
        self.args = args or ("--no-rebuild",)
        self.log_path = log_path
        #: the CPUs (`taskset -c` list) the worker and every process it starts are held to
        self.cpus = cpus
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        pinned = ["taskset", "-c", self.cpus] if self.cpus is not None else []
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [*pinned, sys.executable, "-m", "streams.cli", "run", *self.args],
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
    env: dict[str, str],
    bootstrap: str,
    log_dir: Path,
    count: int = 2,
    cpus: Sequence[str | None] = (),
) -> Iterator[tuple[WorkerProcess, ...]]:
    """`count` workers of one app, as on `count` hosts, each up and logging to `log_dir/wN.log`
    (the Nth held to `cpus[N-1]`, if given); stopped at the end unless the test stopped or
    killed them."""
    pinned = [*cpus, *[None] * count][:count]
    with ExitStack() as stack:
        yield tuple(
            stack.enter_context(WorkerProcess(env, bootstrap, log_dir / f"w{n}.log", cpus=cpu))
            for n, cpu in enumerate(pinned, start=1)
        )


def group_members(bootstrap: str, settings: Settings, stage: str) -> int:
    """Members of the stage's consumer group once it is stable (0 while it rebalances)."""

    async def members() -> int:
        async with admin_client(bootstrap, settings) as admin:
            info = await describe_group(admin, stage_group(settings.worker.app_id, stage))
            return len(info.members) if info.state == "Stable" else 0

    return asyncio.run(members())
