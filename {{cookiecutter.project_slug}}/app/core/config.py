"""Settings: every knob of the service in one place, read from the environment or `.env`."""

import os
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.db.url import to_driver_url

DatabaseUrl = Annotated[str, AfterValidator(to_driver_url)]


def _cpu_count() -> int:
    return os.cpu_count() or 1


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", validate_default=True)

    project_name: str = "{{ cookiecutter.project_name }}"

    # Plain URLs (postgresql://, postgres://, sqlite:///) are mapped to this project's drivers.
    # The default is an embedded SQLite file, so a fresh clone runs with no database server.
    database_url: DatabaseUrl = "sqlite:///./app.db"
    db_pool_size: int = Field(default=5, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    # Seconds. Bounded waits are what turn a database outage into a fast 503 instead of a hang.
    db_pool_timeout: float = Field(default=5.0, gt=0)
    db_connect_timeout: float = Field(default=3.0, gt=0)
    db_statement_timeout: float = Field(default=15.0, gt=0)
    db_ping_timeout: float = Field(default=2.0, gt=0)

    # Worker processes for pure-Python CPU work (see app.core.concurrency).
    process_pool_workers: int = Field(default_factory=_cpu_count, ge=1)
