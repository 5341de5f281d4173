"""The API key format: recognisable, self-checking, and useless to store in clear.

``mlsk_`` + 12-character key id + 43-character secret + 6-character checksum, all base62
(66 characters). The secret carries 256 bits of randomness; the id lets an operator name a key
in listings and revocations without ever seeing the secret; the CRC32 checksum lets secret
scanners (and our server, before any database work) tell a real key from a random string.

Because the key is uniformly random and long, a single SHA-256 is the right at-rest hash: a
slow KDF protects low-entropy passwords, and would only make every request slower here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import zlib
from dataclasses import dataclass

PREFIX = "mlsk_"
ALPHABET = string.digits + string.ascii_letters
ID_LENGTH = 12
SECRET_LENGTH = 43  # 62**43 > 2**256
CHECKSUM_LENGTH = 6  # 62**6 > 2**32
KEY_LENGTH = len(PREFIX) + ID_LENGTH + SECRET_LENGTH + CHECKSUM_LENGTH
KEY_PATTERN = re.compile(rf"{PREFIX}[0-9A-Za-z]{{{KEY_LENGTH - len(PREFIX)}}}")
_HASH_DOMAIN = b"mlflow-secure/api-key/v1\x00"


class MalformedKey(ValueError):
    """Not one of our keys; the message never contains the candidate."""


@dataclass(frozen=True)
class ParsedKey:
    key_id: str
    digest: bytes


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, remainder = divmod(number, 62)
        digits.append(ALPHABET[remainder])
    return "".join(reversed(digits))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def _random(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def digest(key: str) -> bytes:
    return hashlib.sha256(_HASH_DOMAIN + key.encode()).digest()


def generate() -> tuple[str, ParsedKey]:
    """A new key, shown once to its owner, and what the server keeps of it."""
    body = PREFIX + _random(ID_LENGTH) + _random(SECRET_LENGTH)
    key = body + _checksum(body)
    return key, ParsedKey(key_id=body[len(PREFIX) : len(PREFIX) + ID_LENGTH], digest=digest(key))


def looks_like_key(candidate: str) -> bool:
    return candidate.startswith(PREFIX)


def parse(candidate: str) -> ParsedKey:
    if len(candidate) != KEY_LENGTH or not KEY_PATTERN.fullmatch(candidate):
        raise MalformedKey("not a well-formed mlflow-secure API key")
    body, checksum = candidate[:-CHECKSUM_LENGTH], candidate[-CHECKSUM_LENGTH:]
    if not hmac.compare_digest(_checksum(body), checksum):
        raise MalformedKey("API key checksum mismatch (truncated or mistyped key?)")
    return ParsedKey(key_id=body[len(PREFIX) : len(PREFIX) + ID_LENGTH], digest=digest(candidate))


def matches(parsed: ParsedKey, stored_digest: bytes) -> bool:
    return hmac.compare_digest(parsed.digest, stored_digest)


def display(key_id: str) -> str:
    """How a key is named in listings and logs: its id, never its secret."""
    return f"{PREFIX}{key_id}…"
