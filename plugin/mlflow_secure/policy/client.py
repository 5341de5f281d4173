"""Asking OPA for a decision, failing closed.

The contract is ``data.mlflow.authz.decision`` → ``{"allow": bool, "reasons": [str]}``.
Anything else — OPA not answering, an HTTP error, an undefined or malformed result — raises
:class:`PolicyUnavailable`, which every caller turns into a refusal (503). There are no
retries (beyond replacing a kept-alive connection gone stale): a retry would only stretch the
time a request waits for a refusal.

Not answering is not the same as answering slowly (connection.py has the whole rule): a
missing socket, a refused or reset connection, a dead or stopped managed OPA process refuse
at once; a decision queued behind load (in OPA, for a CPU, for a free connection) is waited
for. ``timeout`` (MLFLOW_SECURE_OPA_TIMEOUT, 0.5 s by default) bounds connecting and is how
long OPA may stay silent before its process is checked; OPA silent on an established
connection for the answer deadline (5 s, or ``timeout`` if longer) is hung: refused.

The request path needs an async client and unix-socket transport at the lowest cost per call:
it uses the h11 connection pool in connection.py. Synchronous decisions and filters (WSGI
servers, listing narrowers in worker threads) use its socket-and-h11 twin; occasional reads
(revision, status) use httpx, with ``timeout`` as a plain deadline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from mlflow_secure.config import ConfigError
from mlflow_secure.policy.connection import (
    Deadlines,
    Liveness,
    NotAnswering,
    OpaConnectionPool,
    OpaExchangeError,
    Overloaded,
    SyncOpaConnectionPool,
)

DECISION_PATH = "/v1/data/mlflow/authz/decision"
FILTER_PATH = "/v1/data/mlflow/authz/filter"
COMPILE_PATH = "/v1/compile"


class PolicyUnavailable(Exception):
    """No decision could be had; the request must be refused with 503."""


class CompileRefused(Exception):
    """OPA answered a Compile API call without a residual (an error in partial evaluation):
    the caller falls back to asking for decisions."""


@dataclass(frozen=True)
class Decision:
    allow: bool
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class OpaEndpoint:
    """Where OPA listens: a base URL, plus a unix socket path when it is not TCP."""

    base_url: str
    uds: str | None = None

    def describe(self) -> str:
        return f"unix://{self.uds}" if self.uds else self.base_url


def parse_opa_url(url: str) -> OpaEndpoint:
    """Validate MLFLOW_SECURE_OPA_URL up front so a typo stops start-up with one message."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        if not parts.path.startswith("/"):
            raise ConfigError(
                "MLFLOW_SECURE_OPA_URL: a unix socket URL needs an absolute path, "
                "like unix:///run/opa/opa.sock"
            )
        return OpaEndpoint(base_url="http://opa", uds=parts.path)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(
            "MLFLOW_SECURE_OPA_URL must look like http://host:port, https://host:port or "
            "unix:///path/to/socket"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError("MLFLOW_SECURE_OPA_URL must not carry credentials, a query or a fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError on a non-numeric port
    except ValueError:
        raise ConfigError("MLFLOW_SECURE_OPA_URL has an invalid port") from None
    return OpaEndpoint(base_url=url.rstrip("/"))


def interpret(payload: Any) -> Decision:
    """Accept only a well-formed decision; `allow` must be literally true to allow."""
    if not isinstance(payload, dict) or "result" not in payload:
        raise PolicyUnavailable(
            "the policy returned no decision (is data.mlflow.authz.decision "
            "defined for every input?)"
        )
    result = payload["result"]
    if not isinstance(result, dict) or not isinstance(result.get("allow"), bool):
        raise PolicyUnavailable("the policy returned a malformed decision")
    reasons = result.get("reasons", [])
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        raise PolicyUnavailable("the policy returned malformed reasons")
    return Decision(allow=result["allow"] is True, reasons=tuple(reasons))


class _HTTPStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _failure(exc: Exception, endpoint: OpaEndpoint) -> PolicyUnavailable:
    where = endpoint.describe()
    if isinstance(exc, NotAnswering):
        return PolicyUnavailable(f"the policy engine at {where} timed out: {exc}")
    if isinstance(exc, Overloaded):
        return PolicyUnavailable(f"the policy engine at {where} is overloaded: {exc}")
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return PolicyUnavailable(f"the policy engine at {where} timed out")
    if isinstance(exc, httpx.HTTPStatusError):
        exc = _HTTPStatus(exc.response.status_code)
    if isinstance(exc, _HTTPStatus):
        return PolicyUnavailable(f"the policy engine at {where} answered HTTP {exc.status}")
    return PolicyUnavailable(f"the policy engine at {where} is unreachable")


class DecisionClient:
    """One per process; holds pooled connections to OPA for both sync and async callers.

    `alive` tells whether OPA's process runs (the managed OPA's supervisor knows); without it,
    a silent OPA is waited for until the answer deadline (`answer_deadline`, default
    connection.ANSWER_DEADLINE, never below `timeout`).
    """

    def __init__(
        self,
        endpoint: OpaEndpoint,
        timeout: float,
        *,
        alive: Liveness | None = None,
        answer_deadline: float | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.deadlines = Deadlines.from_timeout(timeout, answer_deadline)
        self.alive = alive
        self._sync: httpx.Client | None = None
        self._pool: OpaConnectionPool | None = None
        self._sync_connections: SyncOpaConnectionPool | None = None

    def _client_kwargs(self) -> dict[str, Any]:
        return {"base_url": self.endpoint.base_url, "timeout": httpx.Timeout(self.timeout)}

    def _sync_client(self) -> httpx.Client:
        if self._sync is None:
            transport = httpx.HTTPTransport(uds=self.endpoint.uds, retries=0)
            self._sync = httpx.Client(transport=transport, **self._client_kwargs())
        return self._sync

    def _async_pool(self) -> OpaConnectionPool:
        if self._pool is None:  # one per worker: uvicorn runs one event loop per process
            self._pool = OpaConnectionPool(
                self.endpoint.base_url, self.endpoint.uds, self.deadlines, self.alive
            )
        return self._pool

    def _sync_pool(self) -> SyncOpaConnectionPool:
        if self._sync_connections is None:
            self._sync_connections = SyncOpaConnectionPool(
                self.endpoint.base_url, self.endpoint.uds, self.deadlines, self.alive
            )
        return self._sync_connections

    def _post_sync(self, path: str, policy_input: dict[str, Any]) -> Any:
        body = json.dumps({"input": policy_input}, separators=(",", ":")).encode()
        try:
            status, raw = self._sync_pool().post_json(path, body)
            if status != 200:
                raise _HTTPStatus(status)
            return json.loads(raw)
        except (OpaExchangeError, _HTTPStatus, ValueError) as exc:
            raise _failure(exc, self.endpoint) from None

    def decide_sync(self, policy_input: dict[str, Any]) -> Decision:
        return interpret(self._post_sync(DECISION_PATH, policy_input))

    def filter_sync(self, policy_input: dict[str, Any]) -> set[str]:
        """The ids among `policy_input["resources"]` the subject may read: one OPA call."""
        return _filtered(self._post_sync(FILTER_PATH, policy_input))

    def compile_sync(
        self, query: str, policy_input: dict[str, Any], unknowns: list[str]
    ) -> dict[str, Any]:
        """OPA's partial evaluation of `query` (the Compile API) with `unknowns` left open:
        the residual conditions, as OPA's JSON syntax tree (``{"queries": [...]}``, or ``{}``
        when the query can never hold). One OPA call, failing closed like a decision."""
        document = {"query": query, "input": policy_input, "unknowns": unknowns}
        body = json.dumps(document, separators=(",", ":")).encode()
        try:
            status, raw = self._sync_pool().post_json(COMPILE_PATH, body)
        except OpaExchangeError as exc:
            raise _failure(exc, self.endpoint) from None
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        if status != 200 or not isinstance(payload, dict):
            # OPA answered: the policy cannot be partially evaluated, not a dead engine.
            message = payload.get("message") if isinstance(payload, dict) else None
            raise CompileRefused(f"OPA's Compile API answered HTTP {status}: {message}")
        result = payload.get("result")
        if not isinstance(result, dict):
            raise CompileRefused("OPA's Compile API returned no result")
        return result

    def read_sync(self, path: str, timeout: float | None = None) -> Any:
        """GET a document of OPA's REST API (``/v1/policies``, ``/v1/data/...``) as JSON.

        For background work such as the policy revision, which may allow itself a longer
        `timeout` than a decision on the request path.
        """
        try:
            response = self._sync_client().get(path, timeout=timeout or self.timeout)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise _failure(exc, self.endpoint) from None

    async def _post(self, path: str, policy_input: dict[str, Any]) -> Any:
        body = json.dumps({"input": policy_input}, separators=(",", ":")).encode()
        try:
            status, raw = await self._async_pool().post_json(path, body)
            if status != 200:
                raise _HTTPStatus(status)
            return json.loads(raw)
        except (OpaExchangeError, _HTTPStatus, ValueError) as exc:
            raise _failure(exc, self.endpoint) from None

    async def decide(self, policy_input: dict[str, Any]) -> Decision:
        return interpret(await self._post(DECISION_PATH, policy_input))

    async def filter(self, policy_input: dict[str, Any]) -> set[str]:
        """`filter_sync` for the event loop."""
        return _filtered(await self._post(FILTER_PATH, policy_input))

    def close(self) -> None:
        if self._sync_connections is not None:
            self._sync_connections.close()
            self._sync_connections = None
        if self._sync is not None:
            self._sync.close()
            self._sync = None


def _filtered(payload: Any) -> set[str]:
    result = payload.get("result") if isinstance(payload, dict) else None
    if not isinstance(result, list):
        raise PolicyUnavailable(
            "the policy returned no filter (is data.mlflow.authz.filter defined?)"
        )
    return {item for item in result if isinstance(item, str)}
