from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import CpuDep
from app.api.errors import UNAVAILABLE
from app.schemas.examples import PrimeCount
from app.services.primes import count_primes_below

router = APIRouter(prefix="/examples", tags=["examples"])


@router.get("/primes", responses=UNAVAILABLE)
def count_primes(below: Annotated[int, Query(ge=2, le=10_000_000)], pool: CpuDep) -> PrimeCount:
    """Count the primes below `below`: CPU-bound work, done in the process pool.

    503 when the pool's queue is full, or the job runs past `CPU_JOB_TIMEOUT`.
    """
    count = pool.call(count_primes_below, below)
    return PrimeCount(below=below, count=count)
