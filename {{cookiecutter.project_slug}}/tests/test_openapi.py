from httpx import AsyncClient

# Every status code each endpoint can answer.
EXPECTED = {
    ("/health", "get"): {"200"},
    ("/health/ready", "get"): {"200", "503"},
    ("/api/v1/items", "post"): {"201", "400", "413", "422", "503"},
    ("/api/v1/items", "get"): {"200", "422", "503"},
    ("/api/v1/items/export", "get"): {"200", "503"},
    ("/api/v1/items/{item_id}", "get"): {"200", "404", "422", "503"},
    ("/api/v1/items/{item_id}", "patch"): {"200", "400", "404", "413", "422", "503"},
    ("/api/v1/items/{item_id}", "delete"): {"204", "404", "422", "503"},
    ("/api/v1/items/{item_id}/tags", "get"): {"200", "404", "422", "503"},
    ("/api/v1/items/{item_id}/tags", "post"): {"201", "400", "404", "409", "413", "422", "503"},
    ("/api/v1/examples/primes", "get"): {"200", "422", "503"},
}


async def test_documents_every_endpoint_and_status_code(client: AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    documented = {
        (path, method): set(operation["responses"])
        for path, operations in paths.items()
        for method, operation in operations.items()
    }
    assert documented == EXPECTED


async def test_patch_does_not_offer_null_for_title(client: AsyncClient) -> None:
    components = (await client.get("/openapi.json")).json()["components"]["schemas"]
    assert "anyOf" not in components["ItemUpdate"]["properties"]["title"]
    assert components["ItemUpdate"]["properties"]["title"]["type"] == "string"
