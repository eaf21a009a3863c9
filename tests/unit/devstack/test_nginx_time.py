from __future__ import annotations

from pathlib import Path

import pytest
from rag_devstack.nginx import write_native_config


def test_a_body_timeout_with_a_line_break_is_refused(tmp_path: Path) -> None:
    """ "$" matched before a final newline: "30s\n" reached the rendered nginx file."""

    def write(timeout: str) -> Path:
        return write_native_config(
            tmp_path / "nginx",
            tmp_path / "logs",
            edge_listen="127.0.0.1:1",
            query_lb_listen="127.0.0.1:2",
            gateways=["127.0.0.1:3"],
            queries=["127.0.0.1:4"],
            client_body_timeout=timeout,
        )

    assert "client_body_timeout 30s;" in (write("30s").parent / "rag.conf").read_text()
    with pytest.raises(ValueError, match="NGINX_CLIENT_BODY_TIMEOUT"):
        write("30s\n")
