from pydantic import BaseModel


class PrimeCount(BaseModel):
    below: int
    count: int
