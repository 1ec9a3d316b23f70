from pydantic import BaseModel


class ErrorMessage(BaseModel):
    """The body of every error this API answers on purpose (as FastAPI's HTTPException does)."""

    detail: str
