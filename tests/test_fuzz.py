"""Fuzzing each bake's OpenAPI schema: no 5xx, and no answer the schema does not document.

The one 5xx allowed is the documented 503 of work refused or stopped on purpose: the fuzzer
asks for large prime counts, which a time limit of 1 s stops.
"""

import sys
from pathlib import Path

import pytest

from tests.helpers import clean_env, create_database, mode_of, run
from tests.serve import migrated_copy, production, serving

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
]


def test_fuzzing_the_schema_finds_no_error_and_no_undocumented_answer(
    baked: Path, postgres_admin_url: str, tmp_path: Path
) -> None:
    env = clean_env(
        DATABASE_URL=create_database(postgres_admin_url, f"fuzz_{mode_of(baked)}"),
        # Large primes are refused fast rather than computed (503, documented).
        CPU_JOB_TIMEOUT="1",
        CPU_QUEUE_SIZE="2",
    )
    project = migrated_copy(baked, tmp_path, env)
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        '[checks.not_a_server_error]\nexpected-statuses = ["2xx", "3xx", "4xx", 503]\n'
    )
    with serving(production(), project, env) as client:
        fuzzed = run(
            sys.executable, "-m", "schemathesis.cli", "--config-file", config,
            "run", f"{client.base_url}/openapi.json",
            "--checks", ",".join(CHECKS), "--max-examples", "60", "--seed", "1",
            "--request-timeout", "10", "--no-color",
            cwd=tmp_path,
        )  # fmt: skip
    report = fuzzed.stdout[-6000:] + fuzzed.stderr[-2000:]
    assert fuzzed.returncode == 0, report
    if " passed" not in fuzzed.stdout:
        pytest.fail(f"schemathesis ran no test:\n{report}")
