"""Schemathesis (v4) against the gateway's merged OpenAPI document, through nginx: every
operation except the SSE streams, at least 1,000 generated requests (valid and invalid), zero
5xx and zero responses that break the schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rag_devstack import NativeStack

from tests.e2e.gateway.conftest import Edge

pytestmark = pytest.mark.e2e
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"
# `make test` sends about 500 requests; FUZZ_EXAMPLES=40 (`make fuzz`) sends 1,000+.
EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "20"))
MIN_CASES = 25 * EXAMPLES_PER_OPERATION


def test_generated_requests_get_no_5xx_and_match_the_schema(
    unthrottled_stack: NativeStack, tmp_path: Path
) -> None:
    fuzz_stack = unthrottled_stack
    edge = Edge(fuzz_stack.edge_url)
    key = edge.new_key("fuzz", ["ingest:read", "ingest:write", "query:read", "admin"])
    auth = edge.bearer(key)
    assert edge.http.post("/v1/collections", json={"name": "fuzz"}, headers=auth).status_code == 201
    posted = edge.http.post(
        "/v1/collections/fuzz/documents",
        json={"documents": [{"id": "doc-1", "text": "Fuzzing finds what tests forget."}]},
        headers=auth,
    )
    assert edge.wait_job(posted.json()["jobs"][0]["job_id"], auth)["state"] == "succeeded"
    events = tmp_path / "events.ndjson"
    run = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{fuzz_stack.edge_url}/schema/openapi.json",
            "--url",
            fuzz_stack.edge_url,
            "--header",
            f"Authorization: Bearer {key}",
            "--checks",
            CHECKS,
            "--max-examples",
            str(EXAMPLES_PER_OPERATION),
            "--seed",
            "20261125",
            "--generation-database",
            "none",
            "--exclude-path-regex",
            r"/events$",
            "--request-timeout",
            "30",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(events),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    (tmp_path / "schemathesis.txt").write_text(run.stdout + run.stderr)
    output = run.stdout.split("=== SUMMARY", 1)[0][-20000:] + run.stderr[-2000:]
    assert run.returncode == 0, output
    cases = count_cases(events)
    assert cases >= MIN_CASES, f"only {cases} generated requests\n{output}"
    for service in ("gateway", "ingest", "query"):
        assert fuzz_stack.processes[service].is_running()


def count_cases(path: Path) -> int:
    """Requests schemathesis sent, from its NDJSON event log."""
    total = 0
    for line in path.read_text().splitlines():
        event = json.loads(line)
        for name, body in event.items():
            if name == "ScenarioFinished" and isinstance(body, dict):
                recorder = body.get("recorder") or {}
                total += len(recorder.get("interactions") or {})
    return total
