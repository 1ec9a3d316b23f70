"""What the machinery opens for the app's lifetime: the database, the HTTP client and the CPU
workers. The app's own resources (app/resources.py) extend it, as its settings extend
`CoreSettings`; the lifespan keeps them on `app.state.resources`.
"""

from dataclasses import dataclass

from starlette.applications import Starlette

from app.core.concurrency import CpuWorkers
from app.core.db.engine import Database
from app.core.http import HttpClient


@dataclass(frozen=True)
class CoreResources:
    database: Database
    http_client: HttpClient
    cpu_workers: CpuWorkers


def core_resources_of(app: Starlette) -> CoreResources:
    """What the machinery opened, while the app's lifespan runs."""
    resources: CoreResources = app.state.resources
    return resources
