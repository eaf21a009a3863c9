"""Each service refuses a bad environment at start: one line on stderr, exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CASES = [
    ("gateway", {"ENVIRONMENT": "prod"}, "ENVIRONMENT='prod'"),
    ("gateway", {"ENVIRONMENT": "production"}, "JWT_SECRET"),
    ("gateway", {"WORKERS": "many"}, "WORKERS='many'"),
    ("ingest", {"CHROMA_PORT": "abc"}, "CHROMA_PORT='abc'"),
    ("ingest", {"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
    ("query", {"CHROMA_PORT": "abc"}, "CHROMA_PORT='abc'"),
    ("query", {"LOG_LEVEL": "chatty"}, "LOG_LEVEL='CHATTY'"),
]


@pytest.mark.parametrize(
    ("service", "bad_env", "expected"), CASES, ids=[f"{c[0]}-{next(iter(c[1]))}" for c in CASES]
)
def test_service_exits_2_with_one_line(
    tmp_path: Path, service: str, bad_env: dict[str, str], expected: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PORT", "HEALTH_PORT")}
    env.update(bad_env)
    result = subprocess.run(
        [sys.executable, "-m", f"rag_{service}"],
        check=False,
        env=env,
        cwd=tmp_path,  # no .env from the developer's checkout
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"rag-{service}: configuration error: ")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
