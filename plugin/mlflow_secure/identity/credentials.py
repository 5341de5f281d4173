"""Reading credentials from a request, strictly, without ever repeating them back.

Anything ambiguous is refused: several Authorization headers, bad base64, non-UTF-8 bytes,
a missing colon, an oversized value, or a credential placed in the URL (where proxies,
browser history and access logs would keep it).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

from mlflow_secure.identity import api_keys

MAX_AUTHORIZATION_LENGTH = 8192
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*")
_CREDENTIAL_PARAMS = {"api_key", "apikey", "access_token", "token", "key", "password"}


class CredentialError(Exception):
    """The request's credentials are unusable; `status` is 400 or 401, the message is fixed."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Bearer:
    token: str


@dataclass(frozen=True)
class Basic:
    username: str
    password: str


Credential = Bearer | Basic


def check_query_string(query: bytes) -> None:
    if not query:
        return
    text = query.decode("latin-1")
    if api_keys.PREFIX in text or _JWT_SHAPE.search(text):
        raise CredentialError(
            "Credentials must be sent in the Authorization header, never in the URL.", 400
        )
    for name, value in parse_qsl(text, keep_blank_values=True):
        if name.lower() in _CREDENTIAL_PARAMS and value:
            raise CredentialError(
                "Credentials must be sent in the Authorization header, never in the URL.", 400
            )


def parse_authorization(values: Sequence[bytes]) -> Credential | None:
    """`values`: every Authorization header of the request, as raw bytes."""
    if not values:
        return None
    if len(values) > 1:
        raise CredentialError("Send exactly one Authorization header.", 400)
    raw = values[0]
    if len(raw) > MAX_AUTHORIZATION_LENGTH:
        raise CredentialError("The Authorization header is too large.", 400)
    try:
        header = raw.decode("ascii")
    except UnicodeDecodeError:
        raise CredentialError("Malformed Authorization header.") from None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if not value:
        raise CredentialError("Malformed Authorization header.")
    if scheme.lower() == "bearer":
        return Bearer(value)
    if scheme.lower() == "basic":
        return _basic(value)
    raise CredentialError("Unsupported authorization scheme; use Bearer or Basic.")


def _basic(value: str) -> Basic:
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise CredentialError("Malformed Basic credentials.") from None
    username, colon, password = decoded.partition(":")
    if not colon or not username or not password:
        raise CredentialError("Malformed Basic credentials.")
    return Basic(username, password)
