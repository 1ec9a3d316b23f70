"""The service keeps answering while CPU-bound requests are in flight."""

import asyncio
import time

from httpx import AsyncClient, Response

JOB_SECONDS = 1.0  # CPU time of each slow request, measured: the same on any machine
PROBE_EVERY = 0.02  # seconds


async def test_health_answers_fast_while_cpu_bound_requests_run(client: AsyncClient) -> None:
    started = time.perf_counter()
    finished: list[float] = []

    async def slow_request() -> Response:
        response = await client.get("/probes/cpu", params={"seconds": JOB_SECONDS})
        finished.append(time.perf_counter())
        return response

    slow = [asyncio.create_task(slow_request()) for _ in range(4)]
    # Probe on a fixed schedule and time each answer from when it was due, so that a loop
    # too busy to even send a probe counts as a slow answer.
    latencies: list[float] = []
    while not all(task.done() for task in slow):
        due = started + len(latencies) * PROBE_EVERY
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        response = await client.get("/health")
        latencies.append(time.perf_counter() - due)
        assert response.status_code == 200

    # Were the CPU work on the event loop, /health would wait for whole jobs: the first job to
    # finish took a second of CPU at least, and as long by the clock as the machine made it.
    # Off the loop, /health waits only for its turn. Judged against the job's own duration, a
    # machine that slows everything slows both sides alike.
    first_job = min(finished) - started
    worst = max(latencies)
    assert worst < first_job / 2, (
        f"/health took up to {worst * 1000:.0f} ms while CPU-bound requests ran "
        f"(the first took {first_job * 1000:.0f} ms)"
    )
    for task in slow:
        assert (await task).json()["spent"] >= JOB_SECONDS
