from fastapi import APIRouter
from sqlalchemy import text

from app.api.deps import SessionDep
from app.api.errors import DATABASE_UNAVAILABLE
from app.schemas.health import HealthStatus

router = APIRouter(prefix="/health", tags=["health"])


@router.get("")
def live() -> HealthStatus:
    """The process is up and serving; touches no database."""
    return HealthStatus()


@router.get("/ready", responses=DATABASE_UNAVAILABLE)
def ready(session: SessionDep) -> HealthStatus:
    """The database answers (bounded by the connect, pool and statement timeouts)."""
    session.execute(text("SELECT 1"))
    return HealthStatus()
