"""A real, minimal OpenID Connect provider on 127.0.0.1, for tests.

It speaks HTTP like Keycloak or Auth0 would (discovery document, JWKS, client-credentials
token endpoint), so the code under test does its real network I/O and real signature checks;
nothing is mocked. It also mints tokens directly, including deliberately broken ones (unsigned,
HMAC-signed with the public key, signed by a key that is not published) for attack tests.

    with LocalOidcProvider() as idp:
        token = idp.mint({"groups": ["team-a"]})
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

OMIT: Any = object()
"""Use as a claim value in `mint(...)` to leave that claim out of the token entirely."""

_HMAC_HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def new_private_key(alg: str = "RS256") -> Any:
    """A fresh private key suited to `alg` (RSA 2048, P-256/384/521 or Ed25519)."""
    if alg.startswith(("RS", "PS")):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    curves = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
    if alg in curves:
        return ec.generate_private_key(curves[alg]())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"no key type for {alg}")


def public_jwk(private_key: Any, kid: str | None, alg: str | None) -> dict[str, Any]:
    """The public half of `private_key` as a JWK dict, as a provider would publish it."""
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    jwk["use"] = "sig"
    if kid is not None:
        jwk["kid"] = kid
    if alg is not None:
        jwk["alg"] = alg
    return jwk


def _secret_matches(expected: str, offered: str) -> bool:
    candidates = {offered, unquote_plus(offered)}
    return any(hmac.compare_digest(expected.encode(), c.encode()) for c in candidates)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(obj: dict[str, Any]) -> str:
    return _b64url(json.dumps(obj, separators=(",", ":")).encode())


@dataclass
class _Key:
    private: Any
    alg: str
    publish_alg: bool


@dataclass
class _Client:
    secret: str
    claims: dict[str, Any]


class LocalOidcProvider:
    """Discovery, JWKS and client-credentials token endpoint in a background thread.

    Endpoints live under the issuer, which has a realm-style path (like Keycloak's) so the
    discovery URL is built the way real deployments need it built.
    """

    def __init__(self, realm: str = "test") -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, _Key] = {}
        self._clients: dict[str, _Client] = {}
        self.signing_kid = self._add(new_private_key("RS256"), "RS256", publish_alg=True)
        self.token_lifetime = 300
        self.token_requests = 0
        self.jwks_requests = 0
        self.discovery_requests = 0
        self.fail_jwks = False  # when True, /jwks answers 500 (a provider having a bad day)
        self._realm = realm
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.issuer = self.jwks_url = self.token_url = ""

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> LocalOidcProvider:
        # Port 0: the kernel picks a free port, so there is no race with other tests.
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        port = self._server.server_address[1]
        self.issuer = f"http://127.0.0.1:{port}/realms/{self._realm}"
        self.jwks_url = f"{self.issuer}/jwks"
        self.token_url = f"{self.issuer}/token"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll interval
            name="local-oidc-provider",
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    # -- keys ---------------------------------------------------------------------------------

    def _add(self, private: Any, alg: str, *, publish_alg: bool) -> str:
        kid = uuid.uuid4().hex[:16]
        with self._lock:
            self._keys[kid] = _Key(private, alg, publish_alg)
        return kid

    def add_key(self, alg: str = "RS256", *, publish_alg: bool = True) -> str:
        """Publish an extra signing key for `alg` and return its kid (mint with kid=...)."""
        return self._add(new_private_key(alg), alg, publish_alg=publish_alg)

    def rotate_key(self) -> None:
        """Replace the default signing key: new kid published, old kid withdrawn."""
        new_kid = self._add(new_private_key("RS256"), "RS256", publish_alg=True)
        with self._lock:
            del self._keys[self.signing_kid]
            self.signing_kid = new_kid

    @property
    def public_key_pem(self) -> bytes:
        """The current signing key's public half (what an algorithm-confusion attacker has)."""
        with self._lock:
            private = self._keys[self.signing_kid].private
        return private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            keys = dict(self._keys)
        return {
            "keys": [
                public_jwk(k.private, kid, k.alg if k.publish_alg else None)
                for kid, k in keys.items()
            ]
        }

    # -- tokens -------------------------------------------------------------------------------

    def _claims(self, claims: dict[str, Any] | None, audience: str, expires_in: int) -> dict:
        now = int(time.time())
        merged: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "iat": now,
            "exp": now + expires_in,
            "sub": "alice-subject-id",
            "preferred_username": "alice",
            "jti": uuid.uuid4().hex,
        }
        merged.update(claims or {})
        return {name: value for name, value in merged.items() if value is not OMIT}

    def mint(
        self,
        claims: dict[str, Any] | None = None,
        *,
        audience: str = "mlflow",
        expires_in: int = 300,
        kid: str | None = None,
        alg: str = "RS256",
        key: Any = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """A signed token. Defaults make a valid token for user "alice"; `claims` override
        (value OMIT removes a claim; likewise in `headers`). With `key` unset, signs with the
        key published as `kid` (default: the current signing key). An HS* `alg` with bytes
        `key` is HMAC-signed by hand, because PyJWT rightly refuses to use a PEM public key as
        an HMAC secret."""
        payload = self._claims(claims, audience, expires_in)
        if kid is None and key is None:
            kid = self.signing_kid
        if key is None:
            with self._lock:
                key = self._keys[kid].private
        header: dict[str, Any] = {"typ": "JWT", **({"kid": kid} if kid else {})}
        header.update(headers or {})
        header = {name: value for name, value in header.items() if value is not OMIT}
        if alg in _HMAC_HASHES:
            header["alg"] = alg
            signing_input = f"{_segment(header)}.{_segment(payload)}"
            digest = hmac.new(key, signing_input.encode(), _HMAC_HASHES[alg]).digest()
            return f"{signing_input}.{_b64url(digest)}"
        return jwt.encode(payload, key, algorithm=alg, headers=header)

    def mint_unsigned(self, claims: dict[str, Any] | None = None) -> str:
        """An `alg: none` token naming the real kid: the oldest forgery in the book."""
        payload = self._claims(claims, "mlflow", 300)
        header = {"alg": "none", "typ": "JWT", "kid": self.signing_kid}
        return f"{_segment(header)}.{_segment(payload)}."

    # -- clients ------------------------------------------------------------------------------

    def register_client(
        self, client_id: str, client_secret: str, claims: dict[str, Any] | None = None
    ) -> None:
        """Allow the client-credentials grant for this client; `claims` go into its tokens."""
        with self._lock:
            self._clients[client_id] = _Client(client_secret, dict(claims or {}))

    def _issue(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict]:
        with self._lock:
            self.token_requests += 1
        if form.get("grant_type") != "client_credentials":
            return HTTPStatus.BAD_REQUEST, {"error": "unsupported_grant_type"}
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
                raw_id, _, raw_secret = decoded.partition(":")
            except (ValueError, UnicodeDecodeError):
                return HTTPStatus.UNAUTHORIZED, {"error": "invalid_client"}
            # RFC 6749 §2.3.1 says both halves are form-urlencoded first; httpx and requests
            # send them raw. Accept either spelling, as lenient real providers do.
            if raw_id in self._clients:
                client_id, secret = raw_id, raw_secret
            else:
                client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
        with self._lock:
            client = self._clients.get(client_id or "")
        if client is None or secret is None or not _secret_matches(client.secret, secret):
            return HTTPStatus.UNAUTHORIZED, {"error": "invalid_client"}
        claims: dict[str, Any] = {
            "sub": client_id,
            "azp": client_id,
            "preferred_username": client_id,
            **client.claims,
        }
        if form.get("scope"):
            claims["scope"] = form["scope"]
        lifetime = self.token_lifetime
        token = self.mint(claims, audience=form.get("audience") or "mlflow", expires_in=lifetime)
        return HTTPStatus.OK, {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": lifetime,
        }

    def _discovery(self) -> dict[str, Any]:
        with self._lock:
            self.discovery_requests += 1
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_url,
            "token_endpoint": self.token_url,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256", "PS256", "EdDSA"],
        }

    def _published_jwks(self) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.jwks_requests += 1
            failing = self.fail_jwks
        if failing:
            return HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "server_error"}
        return HTTPStatus.OK, self.jwks()


def _handler_for(provider: LocalOidcProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _path(self) -> str:
            prefix = f"/realms/{provider._realm}"
            path = self.path.split("?", 1)[0]
            return path[len(prefix) :] if path.startswith(prefix) else ""

        def _send(self, status: int, body: dict[str, Any], *extra: tuple[str, str]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("cache-control", "no-store")
            for name, value in extra:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = self._path()
            if path == "/.well-known/openid-configuration":
                self._send(HTTPStatus.OK, provider._discovery())
            elif path == "/jwks":
                self._send(*provider._published_jwks())
            else:
                self._send(HTTPStatus.NOT_FOUND, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            if self._path() != "/token":
                self._send(HTTPStatus.NOT_FOUND, {"error": "not_found"})
                return
            form = {name: values[0] for name, values in parse_qs(body).items()}
            status, payload = provider._issue(form, self.headers.get("authorization"))
            extra = [("www-authenticate", 'Basic realm="test"')] if status == 401 else []
            self._send(status, payload, *extra)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep pytest output clean; tokens would otherwise appear in request logs

    return Handler
