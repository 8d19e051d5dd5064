"""`personas demo`, the first thing a new user runs, end to end on each store."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import on_both_stores

pytestmark = pytest.mark.slow


@on_both_stores
def test_the_demo_reproduces_every_planted_label(
    bootstrap: str, isolated_env: dict[str, str]
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PERSONAS_")},
        **isolated_env,
        "PERSONAS_BROKER": bootstrap,
    }
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "demo", "--wallets", "300", "--days", "60", "--json"],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.splitlines()[-1])
    reproduced, classified = map(int, summary["planted_labels_reproduced"].split("/"))
    assert classified > 0 and reproduced == classified, summary
    assert summary["database"] == isolated_env["PERSONAS_DB"]
