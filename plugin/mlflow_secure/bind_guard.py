"""Refuse to serve plaintext HTTP on a non-loopback address unless the operator opts in.

The factory runs inside the HTTP server's worker, which only knows how it was bound from its
own command line (``mlflow server`` passes ``--host`` to uvicorn, ``-b`` to gunicorn,
``--host=`` to waitress; TLS is ``--ssl-certfile`` / ``--certfile``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from mlflow_secure.config import ConfigError

_HOST_FLAGS = {"--host", "-b", "--bind", "--listen"}
_TLS_FLAGS = {"--ssl-certfile", "--certfile"}


def _option_values(argv: Sequence[str], names: set[str]) -> list[str]:
    values = []
    for index, arg in enumerate(argv):
        name, sep, value = arg.partition("=")
        if name in names:
            if sep:
                values.append(value)
            elif index + 1 < len(argv):
                values.append(argv[index + 1])
    return values


def _host_of(bind: str) -> str:
    """`127.0.0.1`, `[::1]:5000`, `0.0.0.0:8000`, `unix:/path` → the host part."""
    if bind.startswith("unix:") or bind.startswith("fd://"):
        return "localhost"  # a unix socket or inherited fd is not reachable over the network
    if bind.startswith("["):
        return bind[1 : bind.index("]")] if "]" in bind else bind
    if bind.count(":") == 1:
        return bind.split(":", 1)[0]
    return bind


def is_loopback(host: str) -> bool:
    if host in {"localhost", "ip6-localhost"}:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name could resolve anywhere


def check_bind(argv: Sequence[str], allow_insecure: bool) -> None:
    hosts = [_host_of(value) for value in _option_values(argv, _HOST_FLAGS)]
    exposed = [host for host in hosts if not is_loopback(host)]
    has_tls = bool(_option_values(argv, _TLS_FLAGS))
    if exposed and not has_tls and not allow_insecure:
        raise ConfigError(
            f"refusing to serve plaintext HTTP on non-loopback address {exposed[0]!r}: "
            "credentials would cross the network unencrypted. Bind to 127.0.0.1 behind a TLS "
            "proxy, enable TLS (--uvicorn-opts '--ssl-certfile ... --ssl-keyfile ...'), or set "
            "MLFLOW_SECURE_ALLOW_INSECURE_BIND=true if TLS is terminated in front of this host"
        )
