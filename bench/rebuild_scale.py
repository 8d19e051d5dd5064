"""The rebuild at scale (issue 14): against the fetch floor, over history, over workers, a kill.

Every figure is measured in the same run as its baseline, on private copies of a bench database
whose derived rows (features, checkpoints, runs) are cleared first:
- `floor`: one process fetching the 90-day rows (the rebuild's columns) from the SQLite file,
  the faster of the planner's plan (the timestamp index) and a plain table scan; against the whole
  `personas rebuild --no-publish` (3 windows, lifetime, bulk write, the default processes), in the
  daily steady state: the checkpoints of the day before's rebuild are stored. Best of three
  rounds each, alternating; target ≤ 1.5×.
- `history`: the same active wallets with 120 days of history, and with four older copies of the
  same trades (600 days). Each database gets the day before's rebuild first (no checkpoints: it
  reads every wallet's whole history, and writes the checkpoints), then the measured rebuild,
  which reads each wallet from its checkpoint (or the 90-day window's start) on; target ≤ 1.2×
  apart. The first rebuilds are shown too: what the checkpoints save.
- `scale-out`: `personas rebuild --distributed` over one worker, then over two in one group,
  each held to one CPU (`taskset`) with one feature and one rebuild process; the run's own
  recorded duration (start to its last shard recorded), best of two rounds each, alternating;
  target ≥ 1.7× faster with two.
- `kill`: two workers again; one is killed (SIGKILL of its process group) once it has recorded a
  shard and before half are done. The seconds from the kill to the run's end, and whether the
  rows equal those of one host's `run_rebuild` with the same computed_at.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from bench import Context, Measurement, benchmark
from bench.dataset import BenchData, bench_database, copied, fresh_copy
from bench.process import run_measured
from bench.streaming import Run, broker, ensure_topics, target, workdir

__all__ = ["rebuild_scale_benchmark"]

DAY = 86_400
FLOOR_TARGET = 1.5
HISTORY_TARGET = 1.2
SCALE_OUT_TARGET = 1.7
HISTORY_WALLETS = 5_000
OLDER_COPIES = 4
ROUNDS = 3
#: a distributed run takes 10–25 s on one CPU: fewer rounds than the in-process figures
SCALE_OUT_ROUNDS = 2
RUN_TIMEOUT_S = 600.0
#: How often the run's state is read: a run's time is what it recorded (start to last shard),
#: so waiting for its end can be slow: polling every 20 ms, this process used a third of a CPU
#: the workers needed. Catching a worker mid-run for the kill needs the quick poll.
FINISH_POLL_S = 0.5
KILL_POLL_S = 0.02
#: one core each: one feature process, the rebuild's shards computed in the worker itself; small
#: shards on 8 partitions, so that two workers get about as many wallets each
SCALE_OUT_SETTINGS = {
    "rebuild__workers": 1,
    "features__processes": 1,
    "rebuild__shard_wallets": 250,
    "topics__rebuild_jobs_partitions": 8,
}
BATCH_ROWS = "SELECT * FROM wallet_features WHERE source = 'batch' ORDER BY 1, 2, 3"
_COLUMNS = "proxy_wallet, trade_id, condition_id, side, size, price, timestamp"
FLOOR_SQL = {
    "timestamp index": f"SELECT {_COLUMNS} FROM trades WHERE timestamp BETWEEN ? AND ?",
    "table scan": f"SELECT {_COLUMNS} FROM trades NOT INDEXED WHERE timestamp BETWEEN ? AND ?",
}


# --------------------------------------------------------------------------------------------
# Databases and the `personas rebuild` command


def snapshot(source: Path, target_path: Path) -> Path:
    """A copy of a database some rebuild wrote to (its WAL folded in first)."""
    with closing(sqlite3.connect(source)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return copied(source, target_path)


def command_env(db: Path, **overrides: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONAS_")}
    env["PERSONAS_DB"] = str(db)
    env.update({f"PERSONAS_{key.upper()}": str(value) for key, value in overrides.items()})
    return env


def personas_rebuild(db: Path, as_of: int) -> dict[str, Any]:
    """`personas rebuild --no-publish --as-of T --json` on `db`: its summary."""
    argv = ["-m", "streams.cli", "rebuild", "--no-publish", "--as-of", str(as_of), "--json"]
    return run_measured(argv, env=command_env(db)).answer


def prepared(source: Path, target_path: Path, as_of: int) -> tuple[Path, dict[str, Any]]:
    """A fresh copy with the day before's rebuild done (its checkpoints stored), and that
    rebuild's summary."""
    db = fresh_copy(source, target_path)
    return db, personas_rebuild(db, as_of - DAY)


def with_older_copies(data: BenchData, copies: int) -> Path:
    """The bench database plus `copies` older copies of its trades (new ids, each `days` earlier
    than the one before): the same active wallets, `copies + 1` times the history. Cached."""
    path = data.path.with_name(f"{data.path.stem}-x{copies + 1}.db")
    if path.exists():
        return path
    partial = path.with_suffix(".partial")
    started = time.perf_counter()
    print(f"building {path.name} (once; cached) …", flush=True)
    fresh_copy(data.path, partial)
    shift = data.days * DAY
    with closing(sqlite3.connect(partial)) as conn:
        conn.execute(
            f"""INSERT INTO trades ({_COLUMNS})
            SELECT t.proxy_wallet, t.trade_id || '~' || k.value, t.condition_id, t.side, t.size,
                   t.price, t.timestamp - k.value * ?
            FROM trades AS t, json_each(?) AS k""",
            (shift, orjson.dumps(list(range(1, copies + 1))).decode()),
        )
        conn.commit()
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    os.replace(partial, path)
    print(f"built in {time.perf_counter() - started:.0f}s", flush=True)
    return path


# --------------------------------------------------------------------------------------------
# The rebuild against the fetch floor


def fetch_floor(db: Path, as_of: int) -> dict[str, Any]:
    """The bench child: each plan's seconds to fetch the 90-day rows, in this one process."""
    out: dict[str, Any] = {}
    with closing(sqlite3.connect(db)) as conn:
        for plan, sql in FLOOR_SQL.items():
            started = time.perf_counter()
            rows = conn.execute(sql, (as_of - 90 * DAY, as_of)).fetchall()
            out[plan] = time.perf_counter() - started
            out["rows"] = len(rows)
            del rows
    return out


def _floor_rows(data: BenchData, tmp: Path) -> tuple[list[Measurement], Path]:
    db, first = prepared(data.path, tmp / "floor.db", data.as_of)
    steady = snapshot(db, tmp / "steady.db")  # for the scale-out runs: the same starting point
    floors: list[dict[str, Any]] = []
    rebuilds: list[dict[str, Any]] = []
    for _ in range(ROUNDS):
        snapshot(steady, db)
        floors.append(run_measured(["-m", "bench.rebuild_scale", "floor", "--db", str(db),
                                    "--as-of", str(data.as_of)]).answer)  # fmt: skip
        rebuilds.append(personas_rebuild(db, data.as_of))
    floor_s = min(min(f[plan] for plan in FLOOR_SQL) for f in floors)
    fastest = min(FLOOR_SQL, key=lambda plan: min(f[plan] for f in floors))
    rebuild = min(rebuilds, key=lambda r: r["duration_s"])
    ratio = rebuild["duration_s"] / floor_s
    plans = ", ".join(f"{plan} {min(f[plan] for f in floors):.2f}s" for plan in FLOOR_SQL)
    rounds = ", ".join(f"{r['duration_s']:.2f}s" for r in rebuilds)
    phases = rebuild["phases_s"]
    rows = floors[0]["rows"]
    floor_row = Measurement(
        "fetch the 90-day rows (floor)", floor_s, rows, unit="trades",
        note=f"one process, best of {ROUNDS} rounds; {plans}",
        extra={"floors": floors, "plan": fastest},
    )  # fmt: skip
    rebuild_row = Measurement(
        "personas rebuild, day after a rebuild", rebuild["duration_s"], rows, unit="trades",
        baseline=floor_row.name,
        note=(f"{ratio:.2f}× the floor; target ≤ {FLOOR_TARGET}×; {rebuild['wallets']:,} "
              f"wallets, {rebuild['workers'] or 'serial'} procs, read+compute "
              f"{phases['read_compute']:.2f}s, write {phases['write']:.2f}s; rounds {rounds}; "
              f"the day before's (no checkpoints) {first['duration_s']:.2f}s"),
        extra={"rebuilds": rebuilds, "first": first, "ratio": ratio,
               "targets": [target("rebuild ÷ 90-day fetch floor, same run", ratio,
                                  FLOOR_TARGET, "×")]},
    )  # fmt: skip
    print(f"rebuild-scale: {rebuild_row.name} {rebuild_row.note}", flush=True)
    return [floor_row, rebuild_row], steady


# --------------------------------------------------------------------------------------------
# Cost over history: 120 days against 600


def _history_rows(context: Context, tmp: Path) -> list[Measurement]:
    data = bench_database(context.data_dir, wallets=1_000 if context.quick else HISTORY_WALLETS)
    sources = {data.days: data.path,
               data.days * (OLDER_COPIES + 1): with_older_copies(data, OLDER_COPIES)}  # fmt: skip
    first: dict[int, dict[str, Any]] = {}
    steady: dict[int, Path] = {}
    for days, source in sources.items():
        db, first[days] = prepared(source, tmp / f"history-{days}.db", data.as_of)
        steady[days] = snapshot(db, tmp / f"history-{days}-steady.db")
    measured: dict[int, list[dict[str, Any]]] = {days: [] for days in sources}
    for _ in range(ROUNDS):
        for days in sources:
            db = snapshot(steady[days], tmp / f"history-{days}.db")
            measured[days].append(personas_rebuild(db, data.as_of))
    short, long = sorted(sources)
    best = {days: min(r["duration_s"] for r in runs) for days, runs in measured.items()}
    ratio = best[long] / best[short]
    first_ratio = first[long]["duration_s"] / first[short]["duration_s"]
    out = []
    for days in (short, long):
        runs = measured[days]
        rounds = ", ".join(f"{r['duration_s']:.2f}s" for r in runs)
        out.append(Measurement(
            f"rebuild, {days} days of history", best[days], runs[0]["wallets"],
            baseline=None if days == short else f"rebuild, {short} days of history",
            note=(f"from the checkpoints of the day before's rebuild, best of "
                  f"{rounds}; that first rebuild "
                  f"(whole history) {first[days]['duration_s']:.2f}s"
                  + ("" if days == short else f"; {ratio:.2f}× the {short}-day time, target ≤ "
                     f"{HISTORY_TARGET}× (first rebuilds {first_ratio:.2f}×)")),
            extra={"runs": runs, "first": first[days],
                   "targets": [] if days == short else [target(
                       f"rebuild, {long} ÷ {short} days of history", ratio, HISTORY_TARGET, "×")]},
        ))  # fmt: skip
    print(f"rebuild-scale: {out[-1].name} {out[-1].note}", flush=True)
    return out


# --------------------------------------------------------------------------------------------
# Over workers: one against two, and a kill


def start_distributed(run: Run, as_of: int) -> dict[str, Any]:
    """`personas rebuild --distributed`: the run it started (id, shards, wallets)."""
    argv = ["-m", "streams.cli", "rebuild", "--distributed", "--as-of", str(as_of), "--json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONAS_")}
    env.update(run.env(**SCALE_OUT_SETTINGS))
    return run_measured(argv, env=env).answer


def _run_state(db: Path) -> Any:
    from agents.store import open_reader
    from agents.store.job_runs import latest_job_run

    with closing(open_reader(db, 30_000)) as conn:
        return latest_job_run(conn)


def _wait_run(
    db: Path, workers: list[Any], until: Callable[[Any], bool], poll_s: float = FINISH_POLL_S
) -> Any:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while True:
        state = _run_state(db)
        if state is not None and until(state):
            return state
        alive = [w for w in workers if w.process is not None and w.process.poll() is None]
        if not alive or time.monotonic() > deadline:
            raise RuntimeError(f"the rebuild run did not finish; see {workers[0].log_path}")
        time.sleep(poll_s)


def _holders_recorded(settings: Any, workers: int) -> bool:
    """Whether `workers` workers recorded holding every partition of the jobs topic, and one
    the features topic's."""
    from streams.dealing import recorded_holders

    jobs, classifiers = recorded_holders(settings)
    partitions = SCALE_OUT_SETTINGS["topics__rebuild_jobs_partitions"]
    return len(jobs) == partitions and len(set(jobs.values())) == workers and len(classifiers) == 1


def distributed_run(
    steady: Path, tmp: Path, bootstrap: str, as_of: int, cpus: list[str], kill: bool = False
) -> dict[str, Any]:
    """A distributed rebuild of a copy of `steady` over one worker per CPU of `cpus`."""
    from tests.integration.worker import group_members, running_workers

    tag = uuid.uuid4().hex[:8]  # each run its own database, topics and groups
    db = snapshot(steady, tmp / f"workers-{len(cpus)}-{tag}{'-kill' if kill else ''}.db")
    run = Run(bootstrap, db, tag)
    settings = ensure_topics(run, **SCALE_OUT_SETTINGS)
    env = run.env(**SCALE_OUT_SETTINGS)
    log_dir = tmp / f"logs-{run.tag}"
    log_dir.mkdir()
    with running_workers(env, bootstrap, log_dir, len(cpus), cpus) as workers:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        # The leader deals by the partitions the workers recorded holding: wait for them too.
        while group_members(bootstrap, settings, "rebuild") != len(cpus) or not _holders_recorded(
            settings, len(cpus)
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the workers never formed the rebuild group; see {log_dir}")
            time.sleep(0.2)
        started = start_distributed(run, as_of)
        out: dict[str, Any] = {"started": started}
        if kill:
            victim = workers[0]
            assert victim.process is not None
            mine = f":{victim.process.pid}"

            def mid_run(state: Any) -> bool:
                done = sum(n for w, n in state.shards_by_worker().items() if w.endswith(mine))
                return bool(done >= 1 and state.shards_done < started["shards"] // 2)

            at_kill = _wait_run(db, list(workers), mid_run, poll_s=KILL_POLL_S)
            victim.signal_group(signal.SIGKILL)
            killed = time.time()
            out["shards_done_at_kill"] = at_kill.shards_done
        state = _wait_run(db, list(workers), lambda s: s.finished_at is not None)
        out["seconds"] = state.finished_at - state.started_at
        out["shards_by_worker"] = state.shards_by_worker()
        if kill:
            out["kill_to_end_s"] = state.finished_at - killed
    out["db"] = db
    out["settings"] = settings
    return out


def rows_equal_one_host(db: Path, settings: Any, as_of: int) -> tuple[bool, int]:
    """Whether one host's `run_rebuild` (same options, same computed_at) leaves the batch rows
    the distributed run wrote, and how many there are."""
    from agents.compute.rebuild import options_from_settings, run_rebuild

    with closing(sqlite3.connect(db)) as conn:
        distributed = conn.execute(BATCH_ROWS).fetchall()
        [(computed_at,)] = conn.execute(
            "SELECT DISTINCT computed_at FROM wallet_features WHERE source = 'batch' AND as_of = ?",
            (as_of,),
        )
    options = options_from_settings(settings, as_of, computed_at=computed_at)
    run_rebuild(db, replace(options, workers=os.cpu_count() or 1))
    with closing(sqlite3.connect(db)) as conn:
        single = conn.execute(BATCH_ROWS).fetchall()
    return single == distributed, len(distributed)


def _workers_rows(data: BenchData, steady: Path, tmp: Path) -> list[Measurement]:
    if shutil.which("taskset") is None:
        print("rebuild over workers: skipped: no taskset (util-linux)", flush=True)
        return []
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print("rebuild over workers: skipped: one CPU only", flush=True)
        return []
    one_cpu, two_cpus = [str(cpus[0])], [str(cpus[0]), str(cpus[1])]
    ones: list[dict[str, Any]] = []
    twos: list[dict[str, Any]] = []
    with broker(tmp) as bootstrap:
        for _ in range(SCALE_OUT_ROUNDS):
            ones.append(distributed_run(steady, tmp, bootstrap, data.as_of, one_cpu))
            twos.append(distributed_run(steady, tmp, bootstrap, data.as_of, two_cpus))
            print(f"rebuild-scale: distributed rebuild {ones[-1]['seconds']:.1f}s on 1 worker, "
                  f"{twos[-1]['seconds']:.1f}s on 2", flush=True)  # fmt: skip
        one, two = (min(runs, key=lambda r: r["seconds"]) for runs in (ones, twos))
        killed = distributed_run(steady, tmp, bootstrap, data.as_of, two_cpus, kill=True)
    equal, rows = rows_equal_one_host(killed["db"], killed["settings"], data.as_of)
    wallets = one["started"]["wallets"]
    speedup = one["seconds"] / two["seconds"]
    split = ", ".join(str(n) for n in sorted(two["shards_by_worker"].values()))
    shards = one["started"]["shards"]
    return [
        Measurement(
            "distributed rebuild, 1 worker (1 CPU)", one["seconds"], wallets,
            note=(f"{shards} shards of {SCALE_OUT_SETTINGS['rebuild__shard_wallets']} wallets; "
                  f"best of {_seconds(ones)}"),
        ),
        Measurement(
            "distributed rebuild, 2 workers (1 CPU each)", two["seconds"], wallets,
            baseline="distributed rebuild, 1 worker (1 CPU)",
            note=(f"{speedup:.2f}× faster, target ≥ {SCALE_OUT_TARGET}×; best of {_seconds(twos)}; "
                  f"shards per worker {split}"),
            extra={"shards_by_worker": two["shards_by_worker"], "targets": [target(
                "rebuild, 2 workers ÷ 1 worker, 1 CPU each", speedup, SCALE_OUT_TARGET, "×",
                at_least=True)]},
        ),
        Measurement(
            "distributed rebuild, 2 workers, one killed", killed["seconds"], wallets,
            note=(f"SIGKILLed after {killed['shards_done_at_kill']}/{shards} shards; the run "
                  f"ended {killed['kill_to_end_s']:.1f}s after the kill; shards by worker "
                  f"{sorted(killed['shards_by_worker'].values())}; {rows:,} rows, equal to one "
                  f"host's: {'yes' if equal else 'NO'}"),
            extra={"kill_to_end_s": killed["kill_to_end_s"], "rows_equal": equal,
                   "shards_by_worker": killed["shards_by_worker"], "targets": [target(
                       "worker killed: rows equal to one host's (1 = yes)", float(equal), 1.0,
                       "", at_least=True)]},
        ),
    ]  # fmt: skip


def _seconds(runs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['seconds']:.2f}s" for r in runs)


@benchmark("rebuild-scale")
def rebuild_scale_benchmark(context: Context) -> list[Measurement]:
    """The rebuild against its fetch floor, over 120 and 600 days, over one and two workers."""
    data = bench_database(context.data_dir)
    with workdir() as tmp:
        floor, steady = _floor_rows(data, tmp)
        return [*floor, *_history_rows(context, tmp), *_workers_rows(data, steady, tmp)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the 90-day fetch floor (bench child)")
    parser.add_argument("what", choices=["floor"])
    parser.add_argument("--db", required=True)
    parser.add_argument("--as-of", type=int, required=True)
    args = parser.parse_args(argv)
    sys.stdout.buffer.write(orjson.dumps(fetch_floor(Path(args.db), args.as_of)) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
