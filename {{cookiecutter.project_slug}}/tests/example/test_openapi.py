"""The example's routes document exactly their answers (the rules: tests/test_openapi.py)."""

from fastapi import FastAPI

from tests.test_openapi import BODY, UNAVAILABLE

# The example's routes, exactly.
EXAMPLE = {
    ("/api/v1/items", "post"): {"201"} | BODY | UNAVAILABLE,
    ("/api/v1/items", "get"): {"200", "422", "503"},
    ("/api/v1/items/export", "get"): {"200", "503"},
    ("/api/v1/items/{item_id}", "get"): {"200", "404", "422", "503"},
    ("/api/v1/items/{item_id}", "patch"): {"200", "404"} | BODY | UNAVAILABLE,
    ("/api/v1/items/{item_id}", "delete"): {"204", "404", "422", "503"},
    ("/api/v1/items/{item_id}/tags", "get"): {"200", "404", "422", "503"},
    ("/api/v1/items/{item_id}/tags", "post"): {"201", "404", "409"} | BODY | UNAVAILABLE,
    ("/api/v1/examples/primes", "get"): {"200", "422", "503"},
}


def test_the_example_routes_document_exactly_their_answers(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    for (path, method), expected in EXAMPLE.items():
        assert set(paths[path][method]["responses"]) == expected, (path, method)


def test_patch_does_not_offer_null_for_title(app: FastAPI) -> None:
    components = app.openapi()["components"]["schemas"]
    assert "anyOf" not in components["ItemUpdate"]["properties"]["title"]
    assert components["ItemUpdate"]["properties"]["title"]["type"] == "string"
