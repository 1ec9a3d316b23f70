from fastapi import APIRouter, Response

from app.core.metrics import CONTENT_TYPE_LATEST, exposition

router = APIRouter()


# A plain `def`: in multiprocess mode the exposition reads files, so it runs in a thread.
@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    """Every metric, in the Prometheus text format."""
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
