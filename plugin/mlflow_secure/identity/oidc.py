"""Verifying OIDC bearer tokens (JWTs) issued by one configured identity provider.

The verifier trusts exactly one issuer and only the keys that issuer publishes at its JWKS
URL. Key material named inside a token (``jku``, ``x5u``, ``jwk`` headers) is ignored: fetching
keys from a URL the token chooses would let anyone mint their own trusted tokens.

Algorithms are checked against an allow-list before any key is looked at. ``none`` and the
HMAC family are never accepted, even if configured: with a public JWKS, an HS256 token "signed"
with the public key bytes is the classic algorithm-confusion forgery.

Keys are fetched lazily (or eagerly via :meth:`OidcVerifier.refresh_keys`) and cached by
``kid``; a token with a known kid is verified with no I/O and no lock. An unknown kid triggers
at most one JWKS fetch per ``refetch_interval`` seconds, so an attacker sending random kids
cannot turn us into a load generator against the identity provider.

Every :class:`OidcError` message is a fixed phrase chosen here, safe to return to a client:
no token, and nothing copied out of one except a short, alphanumeric ``alg`` name.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import httpx
import jwt
from jwt.algorithms import get_default_algorithms

log = logging.getLogger(__name__)

MAX_TOKEN_BYTES = 16 * 1024
MAX_USERNAME_LENGTH = 256
DEFAULT_REFETCH_INTERVAL = 30.0
REQUIRED_CLAIMS = ("exp", "iat", "iss", "aud")

# Three base64url segments; the signature may be empty (that is what an `alg: none` token
# looks like, and we want those routed here so they are refused with a clear reason).
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_PRINTABLE_ALG = re.compile(r"[A-Za-z0-9]{1,16}")


class OidcError(Exception):
    """The token is not acceptable. The message is safe to show a client: it never holds the
    token or anything secret."""


def looks_like_jwt(token: str) -> bool:
    """Cheap shape check so a front door can route bearer tokens: JWT here, API keys elsewhere.

    It proves nothing about validity; :meth:`OidcVerifier.verify` does that.
    """
    return isinstance(token, str) and _JWT_SHAPE.fullmatch(token) is not None


def _is_forbidden_algorithm(alg: str) -> bool:
    return alg.lower() == "none" or alg.upper().startswith("HS")


@dataclass(frozen=True)
class OidcSettings:
    """Which issuer to trust and how to read identities out of its tokens."""

    issuer: str
    audience: str
    jwks_url: str | None = None
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    algorithms: tuple[str, ...] = ("RS256", "ES256", "PS256", "EdDSA")
    leeway_seconds: int = 30

    def __post_init__(self) -> None:
        # Misconfiguration is caught at start-up, not discovered as a stream of 401s.
        object.__setattr__(self, "algorithms", tuple(self.algorithms))  # a list from config
        if not self.issuer:
            raise ValueError("OIDC issuer must not be empty")
        if not self.audience:
            raise ValueError("OIDC audience must not be empty")
        if not self.algorithms:
            raise ValueError("OIDC algorithms must not be empty")
        known = get_default_algorithms()
        for alg in self.algorithms:
            if _is_forbidden_algorithm(alg):
                raise ValueError(
                    f"OIDC algorithm {alg!r} is not allowed: only asymmetric signatures "
                    "can be verified against a public JWKS"
                )
            if alg not in known:
                raise ValueError(f"OIDC algorithm {alg!r} is not supported")
        if self.leeway_seconds < 0:
            raise ValueError("OIDC leeway_seconds must not be negative")

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"


@dataclass(frozen=True)
class OidcIdentity:
    """Who a verified token says the caller is."""

    username: str
    groups: tuple[str, ...]
    expires_at: float
    # Excluded from repr (personal data in logs) and from eq/hash (a mapping is unhashable).
    claims: Mapping[str, object] = field(repr=False, compare=False)


@dataclass(frozen=True)
class _KeySet:
    """One JWKS snapshot: for each kid, the PyJWK usable with each allowed algorithm.

    PyJWK binds one algorithm per key object, so an RSA key without an ``alg`` member gets one
    PyJWK for RS256 and one for PS256. Replaced wholesale on refetch, never mutated.
    """

    by_kid: Mapping[str, Mapping[str, jwt.PyJWK]]
    anonymous: tuple[Mapping[str, jwt.PyJWK], ...]  # keys published without a kid

    @property
    def all_keys(self) -> tuple[Mapping[str, jwt.PyJWK], ...]:
        return (*self.by_kid.values(), *self.anonymous)


def _build_key_set(document: Any, algorithms: tuple[str, ...]) -> _KeySet:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("JWKS document has no 'keys' list")
    by_kid: dict[str, dict[str, jwt.PyJWK]] = {}
    anonymous: list[dict[str, jwt.PyJWK]] = []
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        declared = jwk.get("alg")
        if declared is None:
            candidates = algorithms
        else:
            # A key that names its algorithm may only be used with that one (RFC 7517 §4.4).
            candidates = (declared,) if declared in algorithms else ()
        usable: dict[str, jwt.PyJWK] = {}
        for alg in candidates:
            try:
                usable[alg] = jwt.PyJWK(jwk, algorithm=alg)
            except (jwt.PyJWTError, ValueError, TypeError):
                continue  # this key cannot be used with this algorithm (e.g. EC key, RS256)
        if not usable:
            continue
        kid = jwk.get("kid")
        if isinstance(kid, str):
            merged = by_kid.setdefault(kid, {})
            for alg, key in usable.items():
                merged.setdefault(alg, key)
        elif kid is None:
            anonymous.append(usable)
    return _KeySet(
        by_kid=MappingProxyType({k: MappingProxyType(v) for k, v in by_kid.items()}),
        anonymous=tuple(MappingProxyType(v) for v in anonymous),
    )


class OidcVerifier:
    """Verifies bearer JWTs against one issuer. Safe to share between threads.

    ``refetch_interval`` bounds how often the JWKS is fetched when a token names an unknown
    kid (and how often a failed fetch is retried). Tests shorten it; production keeps 30 s.
    """

    def __init__(
        self,
        settings: OidcSettings,
        http_timeout: float = 5.0,
        *,
        refetch_interval: float = DEFAULT_REFETCH_INTERVAL,
    ) -> None:
        self.settings = settings
        self._timeout = httpx.Timeout(http_timeout)
        self._refetch_interval = refetch_interval
        self._jwks_url: str | None = settings.jwks_url
        # Read without the lock (a single reference read is atomic); written under it.
        self._keys: _KeySet | None = None
        self._lock = threading.Lock()
        self._last_attempt: float | None = None
        self._last_attempt_failed = False

    # -- public API ---------------------------------------------------------------------------

    def verify(self, token: str) -> OidcIdentity:
        """Return the identity in `token`, or raise OidcError with a client-safe reason."""
        if not isinstance(token, str) or not token:
            raise OidcError("malformed token")
        if len(token) > MAX_TOKEN_BYTES:
            raise OidcError("token too large")
        if not looks_like_jwt(token):
            raise OidcError("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise OidcError("malformed token") from None

        alg = header.get("alg")
        if not isinstance(alg, str) or not alg:
            raise OidcError("malformed token")
        if _is_forbidden_algorithm(alg) or alg not in self.settings.algorithms:
            shown = alg if _PRINTABLE_ALG.fullmatch(alg) else "?"
            raise OidcError(f"unsupported algorithm '{shown}'")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise OidcError("malformed token")

        key = self._key_for(kid, alg)
        claims = self._decode(token, key, alg)
        return self._identity(claims)

    def refresh_keys(self) -> None:
        """Fetch the JWKS now, ignoring the rate limit.

        For start-up (fail fast on a wrong issuer URL) or a periodic timer (so keys the
        provider has withdrawn stop being trusted). Raises OidcError if the fetch fails;
        previously cached keys are kept in that case.
        """
        with self._lock:
            loaded = self._fetch_locked()
        if not loaded:
            raise OidcError("identity provider unreachable")

    # -- keys ---------------------------------------------------------------------------------

    def _key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        keys = self._keys
        if keys is not None and (kid is None or kid in keys.by_kid):
            return self._pick(keys, kid, alg)  # hot path: no lock, no I/O

        with self._lock:
            keys = self._keys  # another thread may have fetched while we waited
            if keys is None or (kid is not None and kid not in keys.by_kid):
                now = time.monotonic()
                due = (
                    self._last_attempt is None or now - self._last_attempt >= self._refetch_interval
                )
                if due:
                    self._fetch_locked()
                keys = self._keys
            failed = self._last_attempt_failed

        if keys is None:
            raise OidcError("identity provider unreachable")
        if kid is not None and kid not in keys.by_kid:
            # If the provider is down we cannot tell a new key from a forged one: say so,
            # so the caller answers 503 (retry later) rather than a definitive 401.
            raise OidcError("identity provider unreachable" if failed else "unknown signing key")
        return self._pick(keys, kid, alg)

    @staticmethod
    def _pick(keys: _KeySet, kid: str | None, alg: str) -> jwt.PyJWK:
        if kid is None:
            # No kid: acceptable only when exactly one published key fits the algorithm, so
            # we never try keys one after another on an attacker's behalf.
            fitting = [k[alg] for k in keys.all_keys if alg in k]
            if len(fitting) != 1:
                raise OidcError("unknown signing key")
            return fitting[0]
        key = keys.by_kid[kid].get(alg)
        if key is None:
            raise OidcError("signing key does not match the token's algorithm")
        return key

    def _fetch_locked(self) -> bool:
        """Fetch discovery (once) and the JWKS; True on success. Caller holds the lock."""
        self._last_attempt = time.monotonic()
        try:
            jwks_url = self._jwks_url or self._discover()
            self._jwks_url = jwks_url
            keys = _build_key_set(self._get_json(jwks_url), self.settings.algorithms)
        except (httpx.HTTPError, ValueError) as exc:
            self._last_attempt_failed = True
            log.warning("OIDC: could not load signing keys for %s: %s", self.settings.issuer, exc)
            return False
        self._keys = keys
        self._last_attempt_failed = False
        log.info("OIDC: loaded %d signing key(s) from %s", len(keys.all_keys), jwks_url)
        return True

    def _discover(self) -> str:
        document = self._get_json(self.settings.discovery_url)
        if not isinstance(document, dict):
            raise ValueError("discovery document is not a JSON object")
        # OpenID Connect Discovery 1.0 §4.3: the document must name the issuer we asked.
        if document.get("issuer") != self.settings.issuer:
            raise ValueError("discovery document names a different issuer than configured")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise ValueError("discovery document has no usable jwks_uri")
        return jwks_uri

    def _get_json(self, url: str) -> Any:
        response = httpx.get(
            url,
            timeout=self._timeout,
            follow_redirects=False,
            headers={"accept": "application/json"},
        )
        if response.status_code != 200:
            raise ValueError(f"{url} answered HTTP {response.status_code}")
        return response.json()

    # -- claims -------------------------------------------------------------------------------

    def _decode(self, token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        s = self.settings
        try:
            return jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_seconds,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.ExpiredSignatureError:
            raise OidcError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise OidcError("token not yet valid") from None
        except jwt.InvalidIssuerError:
            raise OidcError("wrong issuer") from None
        except jwt.InvalidAudienceError:
            raise OidcError("wrong audience") from None
        except jwt.InvalidSignatureError:
            raise OidcError("bad signature") from None
        except jwt.MissingRequiredClaimError as exc:
            claim = exc.claim if exc.claim in REQUIRED_CLAIMS else "?"
            raise OidcError(f"token lacks required claim '{claim}'") from None
        except jwt.InvalidAlgorithmError:
            raise OidcError("signing key does not match the token's algorithm") from None
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError):
            raise OidcError("malformed token") from None

    def _identity(self, claims: dict[str, Any]) -> OidcIdentity:
        s = self.settings
        for name in ("exp", "iat"):
            # PyJWT coerces with int(), which would accept "123" or true; insist on numbers.
            value = claims[name]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise OidcError("malformed token")

        username = claims.get(s.username_claim)
        if username is None:
            username = claims.get("sub")
        if not _valid_name(username):
            raise OidcError("token has no valid username")

        raw_groups = claims.get(s.groups_claim)
        if raw_groups is None:
            raw_groups = []
        elif isinstance(raw_groups, str):
            raw_groups = [raw_groups]
        # Strict: silently dropping odd entries could drop a group a policy relies on.
        if not isinstance(raw_groups, list) or not all(_valid_name(g) for g in raw_groups):
            raise OidcError("token has an invalid groups claim")
        groups = tuple(dict.fromkeys(raw_groups))  # de-duplicated, order kept

        return OidcIdentity(
            username=username,
            groups=groups,
            expires_at=float(claims["exp"]),
            claims=MappingProxyType(claims),
        )


def _valid_name(value: object) -> bool:
    """Non-empty, bounded, and free of control characters (these end up in audit logs)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_USERNAME_LENGTH
        and not any(unicodedata.category(ch) == "Cc" for ch in value)
    )
