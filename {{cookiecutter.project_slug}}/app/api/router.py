"""Every route of the service, in one router that `create_app` mounts."""

from fastapi import APIRouter

from app.api.routes import examples, health, items

api_v1 = APIRouter(prefix="/api/v1")
api_v1.include_router(items.router)
api_v1.include_router(examples.router)

router = APIRouter()
router.include_router(health.router)
router.include_router(api_v1)
