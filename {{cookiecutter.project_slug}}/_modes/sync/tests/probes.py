"""Probes of the machinery, for the tests: test-only routes and a table of their own.

The tests of the database, the CPU workers, the middleware and the metrics call these, never the
example's routes, so they keep passing when the example is removed (README, "Removing the
example"). `probed(app)` mounts them; they are left out of the OpenAPI schema.
"""

import time

from fastapi import APIRouter, FastAPI, HTTPException, status
from pydantic import BaseModel, Field
from sqlalchemy import String, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.api.deps import CpuDep, ReadConnectionDep, SessionDep
from app.api.errors import UNAVAILABLE


class ProbeBase(DeclarativeBase):
    """Tables a test makes in its own transaction (the `probe_table` fixture): not the app's."""


class ProbeRow(ProbeBase):
    __tablename__ = "probe_rows"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))


class ProbeRowCreate(BaseModel):
    title: str = Field(max_length=50)


def burn(seconds: float) -> float:
    """Compute for `seconds` of this thread's CPU time: a CPU job sized by a measure, so it
    takes as long on a fast machine as on a slow one."""
    started = time.thread_time()
    while (spent := time.thread_time() - started) < seconds:
        pass
    return spent


router = APIRouter(prefix="/probes", include_in_schema=False, responses=UNAVAILABLE)


@router.get("/cpu")
def cpu(seconds: float, pool: CpuDep) -> dict[str, float]:
    return {"spent": pool.call(burn, seconds)}


@router.get("/database")
def database(connection: ReadConnectionDep) -> dict[str, int]:
    return {"one": (connection.execute(text("SELECT 1"))).scalar_one()}


@router.get("/rows")
def list_rows(connection: ReadConnectionDep) -> list[str]:
    titles = connection.scalars(select(ProbeRow.title).order_by(ProbeRow.id))
    return list(titles)


@router.get("/rows/{row_id}")
def get_row(row_id: int, connection: ReadConnectionDep) -> str:
    title = connection.scalar(select(ProbeRow.title).where(ProbeRow.id == row_id))
    if title is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Row not found")
    return title


@router.post("/rows", status_code=status.HTTP_201_CREATED)
def add_row(data: ProbeRowCreate, session: SessionDep) -> dict[str, int]:
    row = ProbeRow(title=data.title)
    session.add(row)
    session.flush()
    return {"id": row.id}


def probed(app: FastAPI) -> FastAPI:
    """`app` with the probes mounted."""
    app.include_router(router)
    return app
