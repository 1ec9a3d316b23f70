import pytest
from httpx import AsyncClient

PRIMES = "/api/v1/examples/primes"


@pytest.mark.parametrize(("below", "count"), [(2, 0), (3, 1), (10, 4), (100, 25), (10_000, 1229)])
async def test_counts_primes_below_n(client: AsyncClient, below: int, count: int) -> None:
    response = await client.get(PRIMES, params={"below": below})
    assert response.status_code == 200
    assert response.json() == {"below": below, "count": count}


@pytest.mark.parametrize("below", ["1", "-5", "10000001", "ten", ""])
async def test_rejects_n_out_of_range(client: AsyncClient, below: str) -> None:
    response = await client.get(PRIMES, params={"below": below})
    assert response.status_code == 422


async def test_n_is_required(client: AsyncClient) -> None:
    assert (await client.get(PRIMES)).status_code == 422
