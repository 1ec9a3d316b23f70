import multiprocessing
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.core.concurrency import (
    JobContractError,
    ProcessPool,
    open_process_pool,
    run_in_thread,
    usable_cpus,
)


def thread_name() -> str:
    return threading.current_thread().name


def process_id() -> int:
    return os.getpid()


def fail(message: str) -> None:
    raise ValueError(message)


def power(base: int, *, exponent: int) -> int:
    return int(base**exponent)


def echo(value: object) -> object:
    return value


@dataclass
class Point:
    x: int


def origin() -> Point:
    return Point(0)


def tuple_of(*values: int) -> tuple[int, ...]:
    return values


@pytest.fixture(scope="module")
async def pool() -> AsyncIterator[ProcessPool]:
    async with open_process_pool(2) as pool:
        yield pool


async def test_run_in_thread_runs_off_the_event_loop_thread() -> None:
    assert await run_in_thread(thread_name) != threading.current_thread().name
    assert await run_in_thread(power, 3, exponent=2) == 9


async def test_run_in_thread_propagates_exceptions() -> None:
    with pytest.raises(ValueError, match="boom"):
        await run_in_thread(fail, "boom")


async def test_process_pool_runs_in_other_processes(pool: ProcessPool) -> None:
    assert await pool.run(process_id) != os.getpid()
    assert await pool.run(power, 2, exponent=10) == 1024


async def test_process_pool_propagates_exceptions(pool: ProcessPool) -> None:
    with pytest.raises(ValueError, match="boom"):
        await pool.run(fail, "boom")


async def test_a_job_is_held_to_the_task_queues_contract(pool: ProcessPool) -> None:
    """What the task queue would change on the way (JSON) or cannot import is refused here too,
    so a job that passes the tests on the process pool runs the same on the queue."""
    assert await pool.run(echo, [1, "a", None, {"b": [True, 2.5]}]) == [
        1,
        "a",
        None,
        {"b": [True, 2.5]},
    ]
    with pytest.raises(JobContractError, match="returned a tuple"):
        await pool.run(tuple_of, 1, 2)
    with pytest.raises(JobContractError, match="returned a Point"):
        await pool.run(origin)
    for argument in [(1, 2), {1: "one"}, Point(1), {"a", "b"}, float("nan")]:
        with pytest.raises(JobContractError, match=r"arguments of tests\.test_concurrency\.echo"):
            await pool.run(echo, argument)
    with pytest.raises(JobContractError, match="not a module-level function"):
        await pool.run(lambda: 1)
    assert await pool.run(power, 2, exponent=3) == 8  # the pool serves on


async def test_process_pool_call_serves_def_code_in_threads(pool: ProcessPool) -> None:
    assert await run_in_thread(pool.call, power, 2, exponent=3) == 8
    with pytest.raises(ValueError, match="boom"):
        await run_in_thread(pool.call, fail, "boom")


async def test_open_process_pool_starts_every_worker_and_stops_them() -> None:
    before = set(multiprocessing.active_children())
    async with open_process_pool(2):
        started = set(multiprocessing.active_children()) - before
        assert len(started) == 2
        assert all(process.is_alive() for process in started)
    assert not any(process.is_alive() for process in started)


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("max 100000", None), ("150000 100000", 1), ("50000 100000", 1), ("400000 100000", 4)],
)
def test_usable_cpus_respect_a_container_cpu_quota(
    tmp_path: Path, cpu_max: str, expected: int | None
) -> None:
    (tmp_path / "cpu.max").write_text(f"{cpu_max}\n")
    affinity = usable_cpus(tmp_path / "missing")  # no cgroup file: the affinity alone
    assert usable_cpus(tmp_path) == (affinity if expected is None else min(affinity, expected))
