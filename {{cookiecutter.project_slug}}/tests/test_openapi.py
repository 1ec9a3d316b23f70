"""The OpenAPI schema documents what each route can answer.

Rules every route follows, yours too: a new route that follows them passes with no edit here.
The example's routes are held to their exact answers in tests/example/test_openapi.py.
"""

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts

from app.api.deps import get_cpu_workers
from app.core.session import open_request_connection

# Dependencies on what can be down or full (the database, the CPU workers): a route that takes
# one answers 503 then, and says so (`responses=UNAVAILABLE`, on the route or its router).
MAY_BE_UNAVAILABLE: set[Callable[..., Any]] = {open_request_connection, get_cpu_workers}

BODY, UNAVAILABLE = {"400", "408", "413", "422"}, {"503"}


def dependency_calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from dependency_calls(dependency)


def answers_it_can_give(route: APIRoute, operation: dict[str, Any]) -> dict[str, str]:
    """Each status the app may answer on `route`, whatever its handler does, and why."""
    needed = {}
    if operation.get("parameters") or "requestBody" in operation:
        needed["422"] = "it takes parameters or a body: invalid ones are a 422"
    if "requestBody" in operation:
        needed |= dict.fromkeys(["400", "408", "413"], "it takes a body: add BODY_ERRORS")
    if MAY_BE_UNAVAILABLE & set(dependency_calls(route.dependant)):
        needed["503"] = "it uses the database or the CPU workers: add UNAVAILABLE"
    return needed


def operations(app: FastAPI) -> Iterator[tuple[APIRoute, str, dict[str, Any]]]:
    """Each documented route of the app (in its routers too), with the request line of its
    operation (`GET /health/ready`) and the operation in the OpenAPI schema."""
    paths = app.openapi()["paths"]
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and route.include_in_schema:
            assert context.path_format is not None
            for method in sorted(route.methods or ()):
                operation = paths[context.path_format][method.lower()]
                yield route, f"{method} {context.path_format}", operation


def test_every_route_documents_what_it_can_answer(app: FastAPI) -> None:
    documented = list(operations(app))
    assert documented
    missing = [
        f"{line}: {code}, as {reason}"
        for route, line, operation in documented
        for code, reason in answers_it_can_give(route, operation).items()
        if code not in operation["responses"]
    ]
    assert missing == []


def test_the_rules_see_a_body_a_parameter_and_the_database(app: FastAPI) -> None:
    """The rules themselves: what a route takes decides what it must document."""
    probe = FastAPI()

    @probe.post("/probe/{number}")
    async def takes_everything(number: int, body: dict[str, int]) -> None: ...

    @probe.get("/plain")
    async def takes_nothing() -> None: ...

    needed = {line: answers_it_can_give(route, op) for route, line, op in operations(probe)}
    assert set(needed["POST /probe/{number}"]) == BODY
    assert needed["GET /plain"] == {}
    needed = {line: answers_it_can_give(route, op) for route, line, op in operations(app)}
    assert set(needed["GET /health/ready"]) == UNAVAILABLE
