from fastapi import APIRouter, Response

from app.core.concurrency import run_in_thread
from app.core.metrics import CONTENT_TYPE_LATEST, exposition

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Every metric, in the Prometheus text format."""
    # In multiprocess mode the exposition reads every worker's files: off the event loop.
    return Response(await run_in_thread(exposition), media_type=CONTENT_TYPE_LATEST)
