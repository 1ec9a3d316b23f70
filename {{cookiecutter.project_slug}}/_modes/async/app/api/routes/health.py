import asyncio

from fastapi import APIRouter
from sqlalchemy import text

from app.api.deps import ReadConnectionDep, SettingsDep
from app.api.errors import UNAVAILABLE
from app.core.db.errors import DatabaseUnavailableError
from app.schemas.health import HealthStatus

router = APIRouter(prefix="/health", tags=["health"])


@router.get("")
async def live() -> HealthStatus:
    """The process is up and serving; touches no database."""
    return HealthStatus()


# HEAD too, as load balancers and uptime probes often send it (the GET documents both).
@router.head("", include_in_schema=False)
async def live_head() -> None:
    """The process is up: 200, no body."""


@router.get("/ready", responses=UNAVAILABLE)
async def ready(connection: ReadConnectionDep, settings: SettingsDep) -> HealthStatus:
    """The database answers, within `DB_PING_TIMEOUT` seconds."""
    try:
        async with asyncio.timeout(settings.db_ping_timeout):
            await connection.execute(text("SELECT 1"))
    except TimeoutError:
        raise DatabaseUnavailableError("the database did not answer in time") from None
    return HealthStatus()
