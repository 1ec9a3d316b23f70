from fastapi import APIRouter
from sqlalchemy import text

from app.api.deps import ReadConnectionDep, SettingsDep
from app.api.errors import UNAVAILABLE
from app.schemas.health import HealthStatus

router = APIRouter(prefix="/health", tags=["health"])


@router.get("")
async def live() -> HealthStatus:
    """The process is up and serving; touches no database.

    `async def`, so that it never waits for a worker thread, even when all are busy.
    """
    return HealthStatus()


# HEAD too, as load balancers and uptime probes often send it (the GET documents both).
@router.head("", include_in_schema=False)
async def live_head() -> None:
    """The process is up: 200, no body."""


@router.get("/ready", responses=UNAVAILABLE)
def ready(connection: ReadConnectionDep, settings: SettingsDep) -> HealthStatus:
    """The database answers within DB_PING_TIMEOUT (and the connect and pool timeouts)."""
    if connection.dialect.name == "postgresql":
        # For this transaction only: the pool rolls it back when the connection returns.
        milliseconds = int(settings.db_ping_timeout * 1000)
        connection.exec_driver_sql(f"SET LOCAL statement_timeout = {milliseconds}")
    connection.execute(text("SELECT 1"))
    return HealthStatus()
