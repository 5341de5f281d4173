"""Passwords for people (the MLflow UI's Basic prompt): Argon2id, memory-hard.

Parameters follow OWASP's baseline for Argon2id (19 MiB, 2 passes, 1 lane): about 30 ms per
verification here, which is why the authenticator caches successful verifications briefly
instead of paying it on every UI request.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

MIN_LENGTH = 12
MAX_LENGTH = 1024  # bound the work an attacker can make one verification cost


class WeakPassword(ValueError):
    pass


def check_policy(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"passwords must have at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"passwords must have at most {MAX_LENGTH} characters")


def _kdf() -> Argon2id:
    return Argon2id(salt=os.urandom(16), length=32, iterations=2, lanes=1, memory_cost=19 * 1024)


def hash_password(password: str) -> str:
    check_policy(password)
    return _kdf().derive_phc_encoded(password.encode())


def verify_password(password: str, encoded: str | None) -> bool:
    if encoded is None or not 0 < len(password) <= MAX_LENGTH:
        return False
    try:
        Argon2id.verify_phc_encoded(password.encode(), encoded)
    except (InvalidKey, ValueError):
        return False
    return True
