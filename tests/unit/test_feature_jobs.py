"""How the feature agent cuts a batch into jobs: concurrency bounds the discoveries in flight."""

from hypothesis import given
from hypothesis import strategies as st

from agents.features_agent import JOBS_PER_PROCESS, job_size, jobs_at_once


@given(st.integers(1, 1000), st.integers(1, 64))
def test_jobs_in_flight_hold_at_most_concurrency_discoveries(
    concurrency: int, processes: int
) -> None:
    size = job_size(concurrency, processes)
    at_once = jobs_at_once(concurrency, size)
    assert size >= 1 and at_once >= 1
    assert size * at_once <= max(concurrency, 1)


@given(st.integers(1, 64))
def test_enough_jobs_to_keep_every_process_busy(processes: int) -> None:
    concurrency = 100 * processes
    assert jobs_at_once(concurrency, job_size(concurrency, processes)) >= (
        JOBS_PER_PROCESS * processes
    )


def test_the_default_cuts_into_four_jobs_of_25_on_two_cores() -> None:
    assert job_size(100, 2) == 25
    assert jobs_at_once(100, 25) == 4
