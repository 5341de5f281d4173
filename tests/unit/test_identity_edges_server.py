"""Identity edges at the server boundary: whom the HTTP server believes forwarding headers
from (the real uvicorn, gunicorn and waitress loading a factory), and the audit event's
`client` field (the client build) through sealing, hashing and verification."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mlflow_secure import app as secure_app
from mlflow_secure.audit import store as audit_store
from mlflow_secure.audit import verify
from mlflow_secure.audit.events import GENESIS_HASH as GENESIS
from mlflow_secure.audit.events import (
    HASHED_FIELDS,
    MAX_TEXT,
    AuditEvent,
    compute_hash,
    from_columns,
    record_fields,
    seal,
)
from mlflow_secure.audit.events import parse_trusted_proxies as proxies
from mlflow_secure.config import ConfigError

# ---------------------------------------------------------------- a factory the servers load


@pytest.fixture
def factory_module() -> Iterator[Callable[..., str]]:
    """Registers `edges_factory_<n>:factory`, which aligns forwarding like create_app does."""
    names: list[str] = []

    def make(trusted: str, server: str, app: Any, environ: dict | None = None, argv=()) -> str:
        name = f"edges_factory_{len(names)}"

        def factory() -> Any:
            secure_app.align_forwarding(proxies(trusted), server, environ or {}, list(argv))
            return app

        module = types.ModuleType(name)
        module.factory = factory
        sys.modules[name] = module
        names.append(name)
        return f"{name}:factory"

    yield make
    for name in names:
        sys.modules.pop(name, None)


# ---------------------------------------------------------------- uvicorn


app_seen: dict[str, Any] = {}


async def recording_app(scope, receive, send) -> None:
    app_seen.clear()
    app_seen.update(scope)


def _seen_client(config: Any, peer: str, forwarded: str) -> tuple[str, str]:
    """Load `config` and send one request from `peer`: the client and scheme the app sees."""
    config.load()
    scope = {
        "type": "http",
        "scheme": "http",
        "client": (peer, 5000),
        "headers": [(b"x-forwarded-for", forwarded.encode()), (b"x-forwarded-proto", b"https")],
    }
    asyncio.run(config.loaded_app(scope, None, None))
    return app_seen["client"][0], app_seen["scheme"]


@pytest.mark.parametrize(
    ("trusted", "peer", "client", "scheme"),
    [
        pytest.param("", "127.0.0.1", "127.0.0.1", "http", id="unset-loopback-not-believed"),
        pytest.param("127.0.0.1/32", "127.0.0.1", "203.0.113.9", "https", id="trusted-proxy"),
        pytest.param("10.0.0.0/8", "127.0.0.1", "127.0.0.1", "http", id="loopback-not-listed"),
        pytest.param("10.0.0.0/8", "10.1.2.3", "203.0.113.9", "https", id="listed-network"),
    ],
)
def test_uvicorn_believes_exactly_the_trusted_proxies(
    factory_module, trusted, peer, client, scheme
) -> None:
    import uvicorn.config

    target = factory_module(trusted, "uvicorn", recording_app)
    config = uvicorn.config.Config(target, factory=True, interface="asgi3")
    assert _seen_client(config, peer, "203.0.113.9") == (client, scheme)


@pytest.mark.parametrize(
    ("environ", "argv"),
    [
        pytest.param({"FORWARDED_ALLOW_IPS": "*"}, (), id="env-everyone"),
        pytest.param({"FORWARDED_ALLOW_IPS": "127.0.0.1"}, (), id="env-loopback"),
    ],
)
def test_uvicorn_set_by_the_operator_to_disagree_refuses(factory_module, environ, argv) -> None:
    import uvicorn.config

    target = factory_module("", "uvicorn", recording_app, environ, argv)
    config = uvicorn.config.Config(
        target, factory=True, forwarded_allow_ips=environ["FORWARDED_ALLOW_IPS"]
    )
    with pytest.raises(ConfigError, match="uvicorn believes X-Forwarded-For/-Proto from"):
        config.load()


def test_uvicorn_agreeing_or_without_proxy_headers_starts(factory_module) -> None:
    import uvicorn.config

    env = {"FORWARDED_ALLOW_IPS": "10.0.0.0/8"}
    agreeing = factory_module("10.0.0.0/8", "uvicorn", recording_app, env)
    config = uvicorn.config.Config(agreeing, factory=True, forwarded_allow_ips="10.0.0.0/8")
    config.load()
    assert config.forwarded_allow_ips == "10.0.0.0/8"  # left as the operator set it

    off = factory_module("", "uvicorn", recording_app, {"FORWARDED_ALLOW_IPS": "*"})
    config = uvicorn.config.Config(off, factory=True, proxy_headers=False)
    config.load()  # no proxy handling at all: nothing for the front door to disagree with


def test_a_server_that_cannot_be_inspected_is_checked_by_its_settings() -> None:
    """Serving the app some other way: the settings uvicorn would read decide."""
    with pytest.raises(ConfigError, match="--no-proxy-headers"):
        secure_app.align_forwarding((), "uvicorn", {}, [])
    secure_app.align_forwarding((), "uvicorn", {}, ["--no-proxy-headers"])
    secure_app.align_forwarding((), "uvicorn", {"FORWARDED_ALLOW_IPS": ""}, [])
    with pytest.raises(ConfigError, match=r"FORWARDED_ALLOW_IPS=10\.0\.0\.0/8"):
        secure_app.align_forwarding(proxies("10.0.0.0/8"), "uvicorn", {}, [])
    env = {"FORWARDED_ALLOW_IPS": "10.0.0.0/8"}
    secure_app.align_forwarding(proxies("10.0.0.0/8"), "uvicorn", env, [])
    secure_app.align_forwarding((), "hypercorn", {}, [])  # not a server it knows: no opinion


# ---------------------------------------------------------------- gunicorn


def wsgi_app(environ: dict, start_response: Callable) -> list[bytes]:
    return []


def _gunicorn_app(target: str, options: dict[str, Any]) -> Any:
    from gunicorn.app.base import BaseApplication
    from gunicorn.util import import_app

    class App(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return import_app(target.replace(":factory", ":factory()"))

    return App()


def test_gunicorn_believes_exactly_the_trusted_proxies(factory_module) -> None:
    unset = _gunicorn_app(factory_module("", "gunicorn", wsgi_app), {})
    unset.wsgi()
    assert unset.cfg.forwarded_allow_ips == []  # loopback is no longer believed by default
    assert unset.cfg.forwarded_allow_networks() == []

    listed = _gunicorn_app(factory_module("127.0.0.1/32,10.0.0.0/8", "gunicorn", wsgi_app), {})
    listed.wsgi()
    assert listed.cfg.forwarded_allow_ips == ["127.0.0.1/32", "10.0.0.0/8"]


def test_gunicorn_set_by_the_operator_to_disagree_refuses(factory_module) -> None:
    disagreeing = _gunicorn_app(
        factory_module("", "gunicorn", wsgi_app), {"forwarded_allow_ips": "*"}
    )
    with pytest.raises(ConfigError, match="gunicorn believes X-Forwarded-For/-Proto from \\*"):
        disagreeing.wsgi()
    agreeing = _gunicorn_app(
        factory_module("10.0.0.0/8", "gunicorn", wsgi_app), {"forwarded_allow_ips": "10.0.0.0/8"}
    )
    agreeing.wsgi()


# ---------------------------------------------------------------- waitress


def _waitress_options(target: str, *options: str) -> dict[str, Any]:
    from waitress import runner

    served: dict[str, Any] = {}

    def serve(app: Any, **kw: Any) -> None:
        served.update(kw)

    assert runner.run(argv=["waitress-serve", *options, "--call", target], _serve=serve) == 0
    return served


def test_waitress_passes_forwarding_headers_only_when_proxies_are_trusted(factory_module) -> None:
    unset = _waitress_options(factory_module("", "waitress", object()))
    assert "clear_untrusted_proxy_headers" not in unset  # waitress drops them: nobody believed
    trusted = _waitress_options(factory_module("127.0.0.1/32", "waitress", object()))
    # The front door reads them itself, believing only MLFLOW_SECURE_TRUSTED_PROXIES.
    assert trusted["clear_untrusted_proxy_headers"] == "false"


def test_waitress_rewriting_addresses_itself_refuses(factory_module) -> None:
    target = factory_module("127.0.0.1/32", "waitress", object())
    with pytest.raises(ConfigError, match="--trusted-proxy"):
        _waitress_options(target, "--trusted-proxy=127.0.0.1")
    target = factory_module("127.0.0.1/32", "waitress", object())
    with pytest.raises(ConfigError, match="--clear-untrusted-proxy-headers"):
        _waitress_options(target, "--clear-untrusted-proxy-headers")


# ---------------------------------------------------------------- the audit event's client field


def event(**fields: Any) -> AuditEvent:
    base = {"method": "GET", "path": "/api/2.0/mlflow/experiments/search", "decision": "allow"}
    return AuditEvent.for_request(**{**base, **fields})


def test_client_is_kept_cut_and_scrubbed_like_the_user_agent() -> None:
    assert event(client="mlflow-secure/0.1.0 mlflow/3.17.2 python/3.11").client == (
        "mlflow-secure/0.1.0 mlflow/3.17.2 python/3.11"
    )
    assert event(client=b"bytes/1.0").client == "bytes/1.0"
    long = event(client="c" * 5000).client
    assert long == "c" * MAX_TEXT
    leaked = event(client="oops mlsk_" + "A" * 61).client
    assert "A" * 61 not in leaked
    assert "[REDACTED]" in leaked
    assert event().client is None


def test_client_is_in_the_record_and_the_hash_only_when_set() -> None:
    old_style = seal(event(), 1, GENESIS)
    assert "client" not in old_style
    assert set(old_style) == {*HASHED_FIELDS, "hash"}  # exactly the first format's fields
    assert tuple(old_style) == tuple(record_fields(old_style))

    with_client = seal(event(client="cli/1"), 2, old_style["hash"])
    assert with_client["client"] == "cli/1"
    assert compute_hash(with_client) == with_client["hash"]
    # The hash covers it: changing or dropping it is detected.
    assert compute_hash({**with_client, "client": "cli/2"}) != with_client["hash"]
    dropped = {k: v for k, v in with_client.items() if k != "client"}
    assert compute_hash(dropped) != with_client["hash"]
    # Any verifier's rule ("every field but hash") gives the same hash.
    import hashlib
    import json

    fields = {k: v for k, v in with_client.items() if k != "hash"}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canonical.encode()).hexdigest() == with_client["hash"]


def test_stored_columns_become_the_sealed_record() -> None:
    with_client = seal(event(client="cli/1"), 1, GENESIS)
    without = seal(event(), 2, with_client["hash"])
    assert from_columns({**with_client}) == with_client
    assert from_columns({**without, "client": None}) == without  # a NULL column: absent


def _verifies_optional_fields() -> bool:
    result = verify.verify_records([("x", seal(event(client="c"), 1, GENESIS))])
    return result.ok


def _stores_optional_fields() -> bool:
    return "client" in audit_store.AuditEventRow.__table__.c


@pytest.mark.skipif(
    not _verifies_optional_fields(),
    reason="audit/verify.py does not accept OPTIONAL_FIELDS yet (lead: apply the patch)",
)
def test_a_chain_mixing_old_and_new_events_verifies() -> None:
    first = seal(event(), 1, GENESIS)
    second = seal(event(client="cli/1"), 2, first["hash"])
    third = seal(event(), 3, second["hash"])
    records = [("a", first), ("b", second), ("c", third)]
    assert verify.verify_records(records).ok
    edited = {**second, "client": "forged/9"}
    broken = verify.verify_records([("a", first), ("b", edited), ("c", third)])
    assert (broken.ok, broken.problem, broken.seq) == (False, "edited", 2)
    extra = {**first, "surprise": 1}
    assert verify.verify_records([("a", extra)]).problem == "malformed"


@pytest.mark.skipif(
    not _stores_optional_fields(),
    reason="audit/store.py has no `client` column yet (lead: apply the patch and migration)",
)
def test_client_is_stored_exported_and_verified(tmp_path) -> None:
    from mlflow_secure.identity.store import migration_lock

    engine = audit_store.open_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    with migration_lock(engine):
        audit_store.migrate(engine)
    audit_store.append_events(engine, [event(), event(client="cli/1"), event()])
    with audit_store.snapshot(engine) as connection:
        records = list(audit_store.iter_all(connection))
    assert ["client" in record for record in records] == [False, True, False]
    assert records[1]["client"] == "cli/1"
    assert verify.verify_database(engine).ok
    engine.dispose()
