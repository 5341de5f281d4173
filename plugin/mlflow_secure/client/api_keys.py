"""The shape of an mlflow-secure API key, checked on the client before anything is sent.

A cheap local check turns a key pasted with quotes into a clear message instead of a bare 401
from the server; the message never repeats any character of the key.
"""

from __future__ import annotations

import re

from mlflow_secure.client.errors import config_error

API_KEY_PREFIX = "mlsk_"
API_KEY_LENGTH = 66
_API_KEY_RE = re.compile(r"mlsk_[0-9A-Za-z]{61}")


def _api_key_shape_problem(key: str) -> str:
    """Why ``key`` is not a key, described without repeating any of its characters."""
    if key[:1] in {'"', "'"} or key[-1:] in {'"', "'"}:
        return "it is wrapped in quotes; remove them"
    if key.lower().startswith("bearer "):
        return "it starts with 'Bearer '; give the key alone"
    if any(ch.isspace() for ch in key):
        return "it contains whitespace"
    if not key.startswith(API_KEY_PREFIX):
        return f"it does not start with '{API_KEY_PREFIX}'"
    if len(key) != API_KEY_LENGTH:
        return f"it is {len(key)} characters long, an API key is {API_KEY_LENGTH}"
    return f"only letters and digits may follow '{API_KEY_PREFIX}'"


def validate_api_key(value: str, source: str) -> str:
    """Return the key from ``value`` if it has the API key shape; ``source`` names where it came
    from (raises `ClientError` otherwise)."""
    key = value.strip()
    if _API_KEY_RE.fullmatch(key):
        return key
    raise config_error(
        f"{source} does not hold a valid mlflow-secure API key: {_api_key_shape_problem(key)}. "
        f"An API key is '{API_KEY_PREFIX}' followed by 61 letters and digits."
    )
