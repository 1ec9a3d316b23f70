"""Every route of the service, in one router that `create_app` mounts."""

from fastapi import APIRouter

from app.api.routes import health
from app.api.routes.examples import router as examples_router  # the example
from app.api.routes.items import router as items_router  # the example

api_v1 = APIRouter(prefix="/api/v1")
api_v1.include_router(items_router)  # the example
api_v1.include_router(examples_router)  # the example

router = APIRouter()
router.include_router(health.router)
router.include_router(api_v1)
