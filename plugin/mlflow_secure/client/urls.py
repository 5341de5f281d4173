"""URLs as messages may show them (never their user info or query), and loopback checks."""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit

_LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def display_host(parts: SplitResult) -> str:
    """Host and port only: the user info of a URL may hold a password."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def display_url(url: str) -> str:
    """``url`` fit for a message: user info and query dropped, as either may hold a secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{display_host(parts)}{parts.path}"
