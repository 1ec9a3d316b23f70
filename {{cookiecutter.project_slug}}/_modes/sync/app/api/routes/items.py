from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import IntegrityError

from app.api.deps import ReadConnectionDep, SessionDep, StreamConnectionDep
from app.api.errors import BODY_ERRORS, CONFLICT, NOT_FOUND, UNAVAILABLE
from app.core.db.errors import constraint_violation
from app.models import Item
from app.repositories import items, tags
from app.schemas.item import ItemCreate, ItemRead, ItemUpdate
from app.schemas.tag import TagCreate, TagRead
from app.schemas.types import MAX_INT32
from app.services.csv_export import CSV_HEADER, to_csv

router = APIRouter(prefix="/items", tags=["items"], responses=UNAVAILABLE)
CSV: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Every item, as CSV rows",
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
            },
        },
    },
}
CSV_ATTACHMENT = {"Content-Disposition": 'attachment; filename="items.csv"'}


ItemId = Annotated[int, Path(ge=1, le=MAX_INT32)]


def item_not_found() -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail="Item not found")


def get_item_or_404(item_id: ItemId, session: SessionDep) -> Item:
    item = items.get_item(session, item_id)
    if item is None:
        raise item_not_found()
    return item


# The item of the path, in the request's (read-write) session, or 404.
ItemDep = Annotated[Item, Depends(get_item_or_404)]


@router.post("", status_code=status.HTTP_201_CREATED, responses=BODY_ERRORS)
def create_item(data: ItemCreate, session: SessionDep) -> ItemRead:
    item = items.create_item(session, data)
    return ItemRead.model_validate(item)


@router.get("")
def list_items(
    connection: ReadConnectionDep,
    offset: Annotated[int, Query(ge=0, le=MAX_INT32)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> list[ItemRead]:
    return items.read_items(connection, offset=offset, limit=limit)


@router.get("/export", response_class=StreamingResponse, responses=CSV)
def export_items(connection: StreamConnectionDep) -> StreamingResponse:
    """Every item as CSV, streamed from a server-side cursor in slices: memory stays flat. The
    body is a plain iterator, so Starlette reads it in a worker thread, off the loop."""

    def lines() -> Iterator[str]:
        yield CSV_HEADER
        for rows in items.stream_items(connection):
            yield to_csv(rows)

    return StreamingResponse(lines(), media_type="text/csv", headers=CSV_ATTACHMENT)


@router.get("/{item_id}", responses=NOT_FOUND)
def read_item(item_id: ItemId, connection: ReadConnectionDep) -> ItemRead:
    item = items.read_item(connection, item_id)
    if item is None:
        raise item_not_found()
    return item


@router.patch("/{item_id}", responses=NOT_FOUND | BODY_ERRORS)
def update_item(item: ItemDep, changes: ItemUpdate, session: SessionDep) -> ItemRead:
    updated = items.update_item(session, item, changes)
    if updated is None:
        raise item_not_found()
    return ItemRead.model_validate(updated)


@router.delete("/{item_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
def delete_item(item_id: ItemId, session: SessionDep) -> None:
    # One statement: of concurrent deletes of an item, one deletes it, the others get 404.
    if not items.delete_item(session, item_id):
        raise item_not_found()


@router.get("/{item_id}/tags", responses=NOT_FOUND)
def list_tags(item_id: ItemId, connection: ReadConnectionDep) -> list[TagRead]:
    found = tags.read_tags(connection, item_id)
    if found is None:
        raise item_not_found()
    return found


@router.post(
    "/{item_id}/tags",
    status_code=status.HTTP_201_CREATED,
    responses=NOT_FOUND | CONFLICT | BODY_ERRORS,
)
def add_tag(item_id: ItemId, data: TagCreate, session: SessionDep) -> TagRead:
    try:
        tag = tags.add_tag(session, item_id, data)
    except IntegrityError as error:
        violation = constraint_violation(error)
        if violation is not None and violation.kind == "foreign key":
            raise item_not_found() from error  # the item of the path does not exist
        raise  # a duplicate: 409 (app/api/errors.py)
    return TagRead.model_validate(tag)
