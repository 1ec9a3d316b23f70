"""Typed dependencies for route handlers: declare a parameter as `session: SessionDep`."""

from typing import Annotated

import httpx
from fastapi import Depends, Request
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from app.core.concurrency import CpuWorkers
from app.core.session import get_read_connection, get_session, get_stream_connection
from app.resources import resources_of
from app.settings import Settings


def get_settings(request: Request) -> Settings:
    return resources_of(request.app).settings


def get_cpu_workers(request: Request) -> CpuWorkers:
    return resources_of(request.app).cpu_workers


def get_http_client(request: Request) -> httpx.Client:
    return resources_of(request.app).http_client


SettingsDep = Annotated[Settings, Depends(get_settings)]
CpuDep = Annotated[CpuWorkers, Depends(get_cpu_workers)]
# The app's one client for calls to other services (app/core/http.py); tests stub it.
HttpClientDep = Annotated[httpx.Client, Depends(get_http_client)]
# scope="function": commit before the response is sent, so a failed commit is an error response.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
# For handlers that only read: SQLAlchemy Core on a pooled connection, no ORM bookkeeping.
ReadConnectionDep = Annotated[Connection, Depends(get_read_connection, scope="function")]
# For a streaming response: the connection stays open until the body has been sent.
StreamConnectionDep = Annotated[Connection, Depends(get_stream_connection)]
