"""Routes that stall the event loop, for the template's tests of the stall monitor."""

import time

from fastapi import APIRouter

router = APIRouter(prefix="/stalls")


@router.get("/sleep")
async def sleep() -> dict[str, str]:
    time.sleep(0.3)  # STALL: sleep
    return {"slept": "0.3 s"}


@router.get("/cpu")
async def cpu() -> dict[str, int]:
    return {"total": sum(number % 7 for number in range(4_000_000))}  # STALL: cpu
