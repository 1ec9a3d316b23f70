"""The task queue's pieces that need no broker (the template's tests run a real one)."""

import pytest
from pydantic import ValidationError

from app.core.task_queue import run_function
from tests.settings import IsolatedSettings


def test_a_worker_runs_the_projects_functions_by_name() -> None:
    url = run_function("app.core.database_url", "to_driver_url", ["sqlite:///x.db"], {})
    assert url.startswith("sqlite+")


def test_a_worker_runs_nothing_else() -> None:
    with pytest.raises(ValueError, match="is not this project's code"):
        run_function("os", "system", ["echo hacked"], {})


def test_the_celery_backend_needs_a_broker() -> None:
    with pytest.raises(ValidationError, match="CPU_BACKEND=celery needs CELERY_BROKER_URL"):
        IsolatedSettings(cpu_backend="celery")
    settings = IsolatedSettings(cpu_backend="celery", celery_broker_url="redis://127.0.0.1:1/0")
    assert settings.cpu_backend == "celery"
