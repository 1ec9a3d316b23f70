"""`GET /metrics`, for Prometheus: the same route in both database modes, since it touches no
database and reads the metrics' files in a worker thread."""

from fastapi import APIRouter, HTTPException, Request, Response, status

from app.api.deps import SettingsDep
from app.core.concurrency import run_in_thread
from app.core.metrics import CONTENT_TYPE_LATEST, client_allowed, exposition

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, settings: SettingsDep) -> Response:
    """Every metric, in the Prometheus text format, for the clients METRICS_ALLOWED_CLIENTS
    names (metrics map the service's traffic); 404 for any other."""
    client = request.client.host if request.client else None
    if not client_allowed(client, settings.metrics_allowed_clients):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Not Found")
    # In multiprocess mode the exposition reads every worker's files: off the event loop.
    return Response(await run_in_thread(exposition), media_type=CONTENT_TYPE_LATEST)
