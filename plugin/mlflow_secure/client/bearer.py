"""`BearerAuth`: ``Authorization: Bearer <credential>`` on a ``requests`` request."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

import requests

from mlflow_secure.client.urls import display_host, is_loopback_host

_logger = logging.getLogger(__name__)

_warned_cleartext_hosts: set[str] = set()
_warned_lock = threading.Lock()


def _warn_if_cleartext(url: str | None) -> None:
    """A bearer credential over plain HTTP can be read off the wire; say so once per host."""
    parts = urlsplit(url or "")
    if parts.scheme != "http" or is_loopback_host(parts.hostname):
        return
    host = display_host(parts)
    with _warned_lock:
        if host in _warned_cleartext_hosts:
            return
        _warned_cleartext_hosts.add(host)
    _logger.warning(
        "Sending an mlflow-secure credential to http://%s without TLS; use an https:// "
        "tracking URI.",
        host,
    )


class BearerAuth(requests.auth.AuthBase):
    """Sets ``Authorization: Bearer <credential>``, asking the source on every request so a
    refreshed token is picked up even across MLflow's retries."""

    def __init__(self, credential: Callable[[], str]) -> None:
        self._credential = credential

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        _warn_if_cleartext(request.url)
        request.headers["Authorization"] = f"Bearer {self._credential()}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(<credential redacted>)"
