from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.api.deps import CpuDep
from app.api.errors import UNAVAILABLE
from app.core.disconnect import unless_disconnected
from app.schemas.examples import PrimeCount
from app.services.primes import count_primes_below

router = APIRouter(prefix="/examples", tags=["examples"])


@router.get("/primes", responses=UNAVAILABLE)
async def count_primes(
    below: Annotated[int, Query(ge=2, le=10_000_000)], pool: CpuDep, request: Request
) -> PrimeCount:
    """Count the primes below `below`: CPU-bound work, done in the process pool.

    503 when the pool's queue is full, or the job runs past `CPU_JOB_TIMEOUT`. The job stops
    if the client hangs up before the answer.
    """
    count = await unless_disconnected(request, pool.run(count_primes_below, below))
    return PrimeCount(below=below, count=count)
