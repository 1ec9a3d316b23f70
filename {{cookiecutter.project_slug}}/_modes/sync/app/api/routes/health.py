from fastapi import APIRouter
from sqlalchemy import text

from app.api.deps import ReadConnectionDep
from app.api.errors import UNAVAILABLE
from app.schemas.health import HealthStatus

router = APIRouter(prefix="/health", tags=["health"])


@router.get("")
async def live() -> HealthStatus:
    """The process is up and serving; touches no database.

    `async def`, so that it never waits for a worker thread, even when all are busy.
    """
    return HealthStatus()


@router.get("/ready", responses=UNAVAILABLE)
def ready(connection: ReadConnectionDep) -> HealthStatus:
    """The database answers (bounded by the connect, pool and statement timeouts)."""
    connection.execute(text("SELECT 1"))
    return HealthStatus()
