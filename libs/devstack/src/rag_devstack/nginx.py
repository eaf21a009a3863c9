"""nginx for the native stack, from the same template the Docker stack uses
(deploy/nginx/rag.conf.template)."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[4] / "deploy" / "nginx" / "rag.conf.template"
TLS_TEMPLATE = TEMPLATE.with_name("rag-tls.conf.template")
DEFAULT_MAX_BODY = 50 * 1024 * 1024  # ingest's MAX_REQUEST_BYTES default
DEFAULT_CLIENT_BODY_TIMEOUT = "30s"  # NGINX_CLIENT_BODY_TIMEOUT in .env.example
_NGINX_TIME = re.compile(r"[1-9][0-9]*(ms|s|m)?\Z")
_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill ``${NAME}`` placeholders (as envsubst would); nginx's own ``$name`` stay."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"the nginx template needs {name}")
        return values[name]

    return _VARIABLE.sub(fill, template)


def servers(addresses: Sequence[str]) -> str:
    return " ".join(f"server {a} max_fails=1 fail_timeout=5s;" for a in addresses)


def temp_dir(directory: Path) -> Path:
    """Where nginx buffers large bodies. Run as root, nginx's workers are ``nobody``: they must
    be able to reach the directory, which a private parent (a 0700 home or test directory)
    forbids; then a directory of its own under the system temp dir is used instead."""
    inside = directory / "tmp"
    reachable = all(
        path.stat().st_mode & stat.S_IXOTH
        for path in (directory.resolve(), *directory.resolve().parents)
    )
    if os.geteuid() != 0 or reachable:
        return inside
    digest = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:12]
    outside = Path(tempfile.gettempdir()) / f"rag-nginx-{digest}"
    outside.mkdir(mode=0o711, exist_ok=True)
    os.chmod(outside, 0o711)  # noqa: S103 - traversable, not listable, by nginx's workers
    return outside


def write_native_config(
    directory: Path,
    log_dir: Path,
    *,
    edge_listen: str,
    query_lb_listen: str,
    gateways: Sequence[str],
    queries: Sequence[str],
    max_body_size: str | None = None,
    client_body_timeout: str | None = None,
    tls: tuple[str, Path, Path] | None = None,
) -> Path:
    """A complete nginx configuration under ``directory`` (its own pid, temp and log paths,
    so it runs without root and beside a system nginx); returns the main file. ``tls``:
    (listen, certificate, key) adds the edge over TLS. ``client_body_timeout`` is an nginx
    time (``30s``)."""
    body_timeout = client_body_timeout or DEFAULT_CLIENT_BODY_TIMEOUT
    if not _NGINX_TIME.match(body_timeout):
        raise ValueError(f"NGINX_CLIENT_BODY_TIMEOUT={body_timeout!r}: an nginx time, like 30s")
    directory.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    temp = temp_dir(directory)
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (temp / name).mkdir(parents=True, exist_ok=True)
        os.chmod(temp / name, 0o777)  # noqa: S103 - written by nginx's unprivileged workers
    rag = render(
        TEMPLATE.read_text(),
        {
            "GATEWAY_SERVERS": servers(gateways),
            "QUERY_SERVERS": servers(queries),
            "EDGE_LISTEN": edge_listen,
            "QUERY_LB_LISTEN": query_lb_listen,
            "ACCESS_LOG": str(log_dir / "nginx-access.log"),
            "MAX_BODY_SIZE": str(int(max_body_size) if max_body_size else DEFAULT_MAX_BODY),
            "CLIENT_BODY_TIMEOUT": body_timeout,
        },
    )
    if tls is not None:
        listen, certificate, key = tls
        rag += "\n" + render(
            TLS_TEMPLATE.read_text(),
            {
                "EDGE_TLS_LISTEN": listen,
                "TLS_CERTIFICATE": str(certificate),
                "TLS_CERTIFICATE_KEY": str(key),
                "ACCESS_LOG": str(log_dir / "nginx-access.log"),
                "MAX_BODY_SIZE": str(int(max_body_size) if max_body_size else DEFAULT_MAX_BODY),
                "CLIENT_BODY_TIMEOUT": body_timeout,
            },
        )
    (directory / "rag.conf").write_text(rag)
    user = "user nobody nogroup;\n" if os.geteuid() == 0 else ""
    main = directory / "nginx.conf"
    main.write_text(
        f"""# The native stack's nginx (written by rag_devstack; the site is rag.conf).
{user}worker_processes 1;
pid {directory / "nginx.pid"};
error_log {log_dir / "nginx-error.log"} warn;
events {{ worker_connections 1024; }}
http {{
    default_type application/octet-stream;
    client_body_temp_path {temp / "body"};
    proxy_temp_path {temp / "proxy"};
    fastcgi_temp_path {temp / "fastcgi"};
    uwsgi_temp_path {temp / "uwsgi"};
    scgi_temp_path {temp / "scgi"};
    include {directory / "rag.conf"};
}}
"""
    )
    return main
