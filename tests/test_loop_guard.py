"""The baked suite's loop guard catches each kind of blocking, and only blocking.

Blocking and correct routes (tests/cases/blocking_routes.py) and naive tests that only check
status codes (tests/cases/test_blocking.py) are added to a copy of each bake; the bake's own
suite must fail every blocking one with the guard's message and pass every correct one.
"""

import re
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers import clean_env, mode_of, run

CASES = Path(__file__).parent / "cases"


def with_blocking_routes(baked: Path, tmp_path: Path) -> Path:
    project = tmp_path / baked.name
    shutil.copytree(baked, project)
    shutil.copy(CASES / "blocking_routes.py", project / "app/api/routes/blocking.py")
    shutil.copytree(CASES / "templates", project / "app/api/routes/templates")
    shutil.copy(CASES / "test_blocking.py", project / "tests/test_blocking.py")
    shutil.copy(CASES / "user.json", project / "tests/user.json")
    router = project / "app/api/router.py"
    router.write_text(
        router.read_text().replace(
            "from app.api.routes import health\n",
            "from app.api.routes import blocking, health\n",
        )
        + "router.include_router(blocking.router)\nrouter.include_router(blocking.correct)\n"
    )
    main = project / "app/factory.py"
    main.write_text(
        main.read_text()
        .replace(
            "from app.api.router import router\n",
            "from app.api.router import router\nfrom app.api.routes import blocking\n",
        )
        .replace(
            "    add_error_handlers(app)\n",
            "    add_error_handlers(app)\n    blocking.install(app)\n",
        )
    )
    return project


def outcomes(report: Path) -> dict[str, list[str]]:
    """Each test case's name, and the text of each of its failures and errors."""
    cases = ET.parse(report).getroot().iter("testcase")
    return {
        case.get("name", ""): [
            f"{element.get('message', '')}\n{element.text or ''}"
            for element in case
            if element.tag in ("failure", "error")
        ]
        for case in cases
    }


@pytest.fixture(scope="module")
def guarded_run(
    baked: Path, tmp_path_factory: pytest.TempPathFactory, postgres_admin_url: str
) -> tuple[str, dict[str, list[str]]]:
    tmp_path = tmp_path_factory.mktemp("loop-guard")
    project = with_blocking_routes(baked, tmp_path)
    report = tmp_path / "report.xml"
    env = clean_env(BLOCKING_DSN=postgres_admin_url, BLOCKING_LIFESPAN="1")
    result = run(
        sys.executable,
        "-m",
        "pytest",
        "tests/test_blocking.py",
        "-p",
        "no:cacheprovider",
        f"--junitxml={report}",
        cwd=project,
        env=env,
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    return mode_of(project), outcomes(report)


def test_every_kind_of_blocking_fails_its_test_once(
    guarded_run: tuple[str, dict[str, list[str]]],
) -> None:
    _, results = guarded_run
    blocking = {name: texts for name, texts in results.items() if name.startswith("test_blocking")}
    assert len(blocking) == 52, sorted(results)
    missed = [name for name, texts in blocking.items() if len(texts) != 1]
    assert missed == [], {name: blocking[name] for name in missed}
    # On uvloop the guard refuses, saying how to run (test_what_users_write_is_judged_too).
    judged = {name: text for name, [text] in blocking.items() if name != "test_blocking_on_uvloop"}
    unguarded = [name for name, text in judged.items() if "blocked the event loop" not in text]
    assert unguarded == []
    unplaced = [name for name, text in judged.items() if "app/api/routes/blocking.py" not in text]
    assert unplaced == []


def test_correct_code_passes(guarded_run: tuple[str, dict[str, list[str]]]) -> None:
    _, results = guarded_run
    correct = {name: texts for name, texts in results.items() if name.startswith("test_correct")}
    assert len(correct) == 37, sorted(correct)
    assert {name: texts for name, texts in correct.items() if texts} == {}


def test_a_sync_session_in_async_def_is_caught_in_sync_mode(
    guarded_run: tuple[str, dict[str, list[str]]],
) -> None:
    mode, results = guarded_run
    messages = results["test_session_in_async_def"]
    if mode == "sync":
        [message] = messages
        assert "a sync SQLAlchemy engine" in message, message
        assert "during GET /blocking/session" in message, message
    else:
        assert messages == [], "awaiting an AsyncSession is correct"


def message(results: dict[str, list[str]], test: str) -> str:
    [text] = results[test]
    return text


def test_messages_say_what_where_during_which_request_and_the_fix(
    guarded_run: tuple[str, dict[str, list[str]]],
) -> None:
    _, results = guarded_run
    sleep = message(results, "test_blocking[sleep]")
    assert "time.sleep on the event loop during GET /blocking/sleep\n" in sleep
    assert "at app/api/routes/blocking.py" in sleep
    assert "time.sleep(STALL)" in sleep
    assert "Fix: Use an async API" in sleep
    assert "BlockingError" not in sleep  # the app ran on: one report, the guard's
    assert "  and there: the event loop was blocked for" in sleep  # the call and its stall: one
    cpu = message(results, "test_blocking[cpu]")
    assert "the event loop was blocked for" in cpu
    assert "during GET /blocking/cpu" in cpu
    assert "Fix: CPU work holds the loop" in cpu
    assert "allow_blocking(reason=" in cpu
    wait = message(results, "test_blocking[wait-in-c]")  # off the CPU: not the machine's doing
    assert "the event loop was blocked for" in wait
    computing = re.search(r"\((\d+) ms of it computing\)", wait)
    assert computing is not None, wait
    assert int(computing[1]) < 20, wait
    body = message(results, "test_blocking_big_json_body_without_a_size_limit")
    assert "during POST /blocking/big-json" in body
    assert "in the request for app/api/routes/blocking.py" in body
    assert "big_json()" in body
    assert "cap the body size" in body


def test_what_runs_once_is_caught_the_first_time(
    guarded_run: tuple[str, dict[str, list[str]]],
) -> None:
    _, results = guarded_run
    first = message(results, "test_blocking[first-only]")
    assert "during GET /blocking/first-only" in first
    assert "_cache.append(compute(HOLD))" in first
    lazy = message(results, "test_blocking[lazy-import]")
    assert "import mailbox on the event loop during GET /blocking/lazy-import" in lazy
    assert "Import modules at the top of the file" in lazy


def test_short_calls_are_caught_by_rule(guarded_run: tuple[str, dict[str, list[str]]]) -> None:
    _, results = guarded_run
    bound = message(results, "test_blocking[bound-sleep]")
    assert "time.sleep on the event loop during GET /blocking/bound-sleep" in bound
    resolve = message(results, "test_blocking[getaddrinfo]")
    assert "socket.getaddrinfo on the event loop during GET /blocking/getaddrinfo" in resolve
    assert "Name resolution" in resolve
    tls = message(results, "test_blocking[client-per-request]")
    assert "ssl.SSLContext.load_verify_locations on the event loop" in tls
    assert "share the app's client (HttpClientDep" in tls
    log = message(results, "test_blocking[log-to-file]")
    assert "on the event loop during GET /blocking/log-to-file" in log


def test_blocking_is_charged_to_the_test_whose_app_did_it(
    guarded_run: tuple[str, dict[str, list[str]]],
) -> None:
    _, results = guarded_run
    spawned = message(results, "test_blocking_spawned_task")
    assert "during task _refresh_later() spawned by POST /blocking/spawn" in spawned
    startup = message(results, "test_blocking_lifespan_startup")
    assert "blocked the event loop (setup)" in startup
    assert "time.sleep on the event loop during the app's lifespan" in startup
    shutdown = message(results, "test_blocking_lifespan_shutdown")
    assert "blocked the event loop (teardown)" in shutdown
    assert "socket.gethostbyname on the event loop during the app's lifespan" in shutdown
    stream = message(results, "test_blocking[stream]")
    assert "time.sleep on the event loop during GET /blocking/stream" in stream
    websocket = message(results, "test_blocking_websocket")
    assert "time.sleep on the event loop during WEBSOCKET /blocking/ws" in websocket
    excused_once = message(results, "test_blocking_after_an_excused_call")
    assert "during GET /blocking/bound-sleep" in excused_once
    assert "during GET /blocking/sleep\n" not in excused_once


def test_what_users_write_is_judged_too(guarded_run: tuple[str, dict[str, list[str]]]) -> None:
    _, results = guarded_run
    expected = {
        "test_blocking[default-arg-sleep]": "time.sleep on the event loop during GET",
        "test_blocking[import-module]": "import poplib on the event loop",
        "test_blocking[pipe-recv]": "multiprocessing.connection.Connection.recv on the event",
        "test_blocking[simple-queue]": "_queue.SimpleQueue.get on the event loop",
        "test_blocking_psycopg3": "psycopg.connect on the event loop during GET",
        "test_blocking_on_files[file-digest-20000000]": "hashlib.file_digest on the event loop",
        "test_blocking_on_files[csv-file-2300000]": "io.BufferedReader.read1 on the event loop",
        "test_blocking_on_files[unbuffered-read-8000000]": "io.FileIO.read on the event loop",
        "test_blocking[jinja-per-request]": "make `Jinja2Templates(...)` once, at module level",
        "test_blocking_call_later": "time.sleep on the event loop during POST /blocking/call-",
        "test_blocking_with_the_test_client": "time.sleep on the event loop during GET /blocking/",
        "test_blocking_service_called_directly": (
            "on the event loop during the test's direct call of report_status() "
            "(app/api/routes/blocking.py)"
        ),
        "test_blocking_service_computing_when_called_directly": (
            "during the test's direct call of summarise() (app/api/routes/blocking.py)\n"
            "  at app/api/routes/blocking.py"
        ),
        "test_blocking_on_uvloop": "Run the tests on asyncio's loop",
    }
    wrong = {
        test: message(results, test)
        for test, text in expected.items()
        if text not in message(results, test)
    }
    assert wrong == {}
    # A C call that waits holding the GIL: no rule, no CPU clock, but the wall clock.
    gil = message(results, "test_blocking[gil-wait]")
    assert "the event loop was blocked for" in gil, gil
    assert "app/api/routes/blocking.py" in gil, gil
    assert "gil_wait" in gil, gil
    # A large answer: validation and serialization on the loop, garbage collection included.
    products = message(results, "test_blocking[many-products]")
    assert "the event loop was blocked for" in products, products
    assert "during GET /blocking/many-products" in products, products


def test_a_coverage_run_judges_the_same(
    baked: Path, tmp_path: Path, postgres_admin_url: str
) -> None:
    """`pytest --cov`, as CI usually runs: coverage's tracer is the runner's work, not the app's,
    and what blocks still fails."""
    project = with_blocking_routes(baked, tmp_path)
    report = tmp_path / "report.xml"
    env = clean_env(
        BLOCKING_DSN=postgres_admin_url,
        BLOCKING_LIFESPAN="1",
        COVERAGE_FILE=str(tmp_path / ".coverage"),
    )
    options = ["-p", "no:cacheprovider", "--cov=app", f"--junitxml={report}"]
    result = run(
        sys.executable, "-m", "pytest", "tests/test_blocking.py", *options, cwd=project, env=env
    )
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    results = outcomes(report)
    wrong = {
        name: texts
        for name, texts in results.items()
        if (name.startswith("test_correct") and texts)
        or (name.startswith("test_blocking") and len(texts) != 1)
    }
    assert wrong == {}
    assert "app/api/routes/blocking.py" in result.stdout  # coverage's report ran too


def test_settings_come_from_the_option_then_the_environment_then_the_ini_file(
    baked: Path, tmp_path: Path
) -> None:
    project = with_blocking_routes(baked, tmp_path)

    def cpu_test_passes(*options: str, limit_in_environment: str) -> bool:
        env = clean_env(LOOP_GUARD_STALL_LIMIT=limit_in_environment)
        test = "tests/test_blocking.py::test_blocking[cpu]"
        result = run(sys.executable, "-m", "pytest", test, *options, cwd=project, env=env)
        assert result.returncode in (0, 1), result.stdout[-3000:]
        return result.returncode == 0

    assert cpu_test_passes("--loop-guard-stall-limit=60", limit_in_environment="0.08")
    assert not cpu_test_passes("-o", "loop_guard_stall_limit=60", limit_in_environment="0.08")
    assert cpu_test_passes("-o", "loop_guard_stall_limit=60", limit_in_environment="")


def test_pytest_own_log_handlers_are_not_charged_to_the_app(baked: Path, tmp_path: Path) -> None:
    """Its log file and live logging write on the loop's thread, whatever the app logs."""
    project = with_blocking_routes(baked, tmp_path)
    log_file = tmp_path / "pytest.log"
    test = "tests/test_blocking.py::test_correct_logging"  # alone: nothing warmed up before it
    options = ["-o", f"log_file={log_file}", "-o", "log_cli=true", "-p", "no:cacheprovider"]
    result = run(sys.executable, "-m", "pytest", test, *options, cwd=project, env=clean_env())
    assert result.returncode == 0, result.stdout[-3000:]
    assert "queued on the loop, written by a thread" in log_file.read_text()


def test_static_layer_flags_blocking_calls_in_async_def(baked: Path, tmp_path: Path) -> None:
    project = with_blocking_routes(baked, tmp_path)
    result = run(sys.executable, "-m", "ruff", "check", "app/api/routes/blocking.py", cwd=project)
    assert result.returncode == 1
    assert "ASYNC251" in result.stdout  # time.sleep in async def
    assert "ASYNC210" in result.stdout  # blocking HTTP call in async def


def test_behavioural_test_catches_cpu_work_on_the_loop(baked: Path, tmp_path: Path) -> None:
    """The CPU probe computing inline in `async def`: /health waits. The lag limit is lifted
    here, to show that the behavioural test catches it on its own."""
    project = tmp_path / baked.name
    shutil.copytree(baked, project)
    route = project / "tests/probes.py"
    source = route.read_text()
    inline = (
        source.replace("await pool.run(burn, seconds)", "burn(seconds)")
        .replace("pool.call(burn, seconds)", "burn(seconds)")
        .replace("def cpu(", "async def cpu(")
        .replace("async async def", "async def")
    )
    assert inline != source
    route.write_text(inline)
    env = clean_env(LOOP_GUARD_STALL_LIMIT="60")
    result = run(
        sys.executable,
        "-m",
        "pytest",
        "tests/test_responsiveness.py",
        "-p",
        "no:cacheprovider",
        cwd=project,
        env=env,
    )
    assert result.returncode == 1, result.stdout[-3000:]
    assert "/health took up to" in result.stdout
