from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import ProcessPoolDep
from app.schemas.examples import PrimeCount
from app.services.primes import count_primes_below

router = APIRouter(prefix="/examples", tags=["examples"])


@router.get("/primes")
def count_primes(
    below: Annotated[int, Query(ge=2, le=10_000_000)], pool: ProcessPoolDep
) -> PrimeCount:
    """Count the primes below `below`: CPU-bound work, done in the process pool."""
    count = pool.call(count_primes_below, below)
    return PrimeCount(below=below, count=count)
