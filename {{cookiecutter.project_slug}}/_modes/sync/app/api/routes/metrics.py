from fastapi import APIRouter, HTTPException, Request, Response, status

from app.core.config import Settings
from app.core.metrics import CONTENT_TYPE_LATEST, client_allowed, exposition

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Every metric, in the Prometheus text format, for the clients METRICS_ALLOWED_CLIENTS
    names (metrics map the service's traffic); 404 for any other."""
    settings: Settings = request.app.state.settings
    client = request.client.host if request.client else None
    if not client_allowed(client, settings.metrics_allowed_clients):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Not Found")
    # A plain `def`, run in a worker thread: in multiprocess mode the exposition reads files.
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
