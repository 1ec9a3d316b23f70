"""A route whose job fails on the worker, for the template's tests of the task queue."""

from fastapi import APIRouter

from app.api.deps import CpuDep

router = APIRouter(prefix="/jobs")


def explode(message: str) -> int:
    raise ValueError(message)


@router.get("/explode")
async def explode_on_a_worker(pool: CpuDep) -> dict[str, str]:
    try:
        await pool.run(explode, "boom from the worker")
    except ValueError as error:
        return {"raised": type(error).__name__, "message": str(error)}
    return {"raised": "nothing"}
