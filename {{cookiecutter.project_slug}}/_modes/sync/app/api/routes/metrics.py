from fastapi import APIRouter, Response

from app.core.metrics import CONTENT_TYPE_LATEST, exposition

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """Every metric, in the Prometheus text format."""
    # A plain `def`, run in a worker thread: in multiprocess mode the exposition reads files.
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
