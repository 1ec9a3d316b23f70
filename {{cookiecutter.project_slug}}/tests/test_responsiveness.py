"""The service keeps answering while CPU-bound requests are in flight."""

import asyncio
import time

from httpx import AsyncClient

PRIMES = "/api/v1/examples/primes"
SLOW_BELOW = 200_000  # about half a second of CPU per request on a laptop
PROBE_EVERY = 0.02  # seconds


async def test_health_answers_fast_while_cpu_bound_requests_run(client: AsyncClient) -> None:
    started = time.perf_counter()
    slow = [asyncio.create_task(client.get(PRIMES, params={"below": SLOW_BELOW})) for _ in range(4)]
    # Probe on a fixed schedule and time each answer from when it was due, so that a loop
    # too busy to even send a probe counts as a slow answer.
    latencies: list[float] = []
    while not all(task.done() for task in slow):
        due = started + len(latencies) * PROBE_EVERY
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        response = await client.get("/health")
        latencies.append(time.perf_counter() - due)
        assert response.status_code == 200
    slow_seconds = time.perf_counter() - started

    # Were the CPU work on the event loop, /health would wait for it: seconds.
    worst = max(latencies)
    assert worst < min(0.2, slow_seconds / 5), (
        f"/health took up to {worst * 1000:.0f} ms while CPU-bound requests ran "
        f"({slow_seconds * 1000:.0f} ms)"
    )
    assert [(await task).json()["count"] for task in slow] == [17984] * 4
    assert len(latencies) >= 10, "the slow requests finished too soon to measure anything"
