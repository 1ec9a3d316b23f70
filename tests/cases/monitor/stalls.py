"""Routes that stall the event loop, for the template's tests of the stall monitor."""

import asyncio
import os
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

router = APIRouter(prefix="/stalls")


def compute(seconds: float) -> int:
    """CPU work measured by this thread's CPU clock: as long on any machine."""
    deadline, rounds = time.thread_time() + seconds, 0
    while time.thread_time() < deadline:  # STALL: cpu
        rounds += 1
    return rounds


@router.get("/sleep")
async def sleep() -> dict[str, str]:
    time.sleep(0.3)  # STALL: sleep
    return {"slept": "0.3 s"}


@router.get("/cpu")
async def cpu() -> dict[str, int]:
    return {"rounds": compute(0.3)}


@router.get("/stream")
async def stream() -> StreamingResponse:
    async def rows() -> AsyncIterator[bytes]:
        yield b"first\n"
        await asyncio.sleep(0)
        time.sleep(0.3)  # STALL: stream
        yield b"second\n"

    return StreamingResponse(rows())


@router.get("/pid")
async def pid() -> dict[str, int]:
    return {"pid": os.getpid()}
