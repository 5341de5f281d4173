"""Settings: environment variables prefixed ``MLFLOW_SECURE_``, optionally a TOML file.

One table (``SETTINGS``) declares every setting with its default and meaning, so the
documentation table and the parser cannot drift apart (a test compares them). Environment
variables win over the TOML file named by ``MLFLOW_SECURE_CONFIG``, whose keys are the
setting names in lower case without the prefix (``opa_url = "http://..."``).

Every default is the safe one: an unset setting never loosens security.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "MLFLOW_SECURE_"
CONFIG_FILE_ENV = "MLFLOW_SECURE_CONFIG"


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message names the setting and the fix."""


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _parse_positive_float(value: str) -> float:
    number = float(value)
    if not number > 0 or number == float("inf"):
        raise ValueError("expected a positive number of seconds")
    return number


def _parse_non_negative_float(value: str) -> float:
    number = float(value)
    if not number >= 0 or number == float("inf"):
        raise ValueError("expected a number of seconds, 0 or more")
    return number


def _parse_optional_str(value: str) -> str | None:
    return value.strip() or None


def _parse_str(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


ENCRYPTION_LEVELS = ("public", "internal", "confidential", "restricted", "never")


def _parse_encrypt_from(value: str) -> str:
    level = value.strip().lower()
    if level not in ENCRYPTION_LEVELS:
        raise ValueError(f"expected one of {', '.join(ENCRYPTION_LEVELS)}")
    return level


def _parse_positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError("expected a positive whole number")
    return number


@dataclass(frozen=True)
class Setting:
    name: str  # attribute name; the variable is ENV_PREFIX + name.upper()
    parse: Callable[[str], Any]
    default: Any
    doc: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "opa_url",
        _parse_optional_str,
        None,
        "URL of an external OPA (`http(s)://host:port`, or `unix:///path/to/socket`). "
        "Unset: the server starts and supervises a local OPA on a private unix socket.",
    ),
    Setting(
        "opa_binary",
        _parse_optional_str,
        None,
        "Path of the `opa` executable for the managed OPA. Unset: `opa` on `PATH`, then the "
        "pinned build in the tools cache (`mlflow-secure opa install`).",
    ),
    Setting(
        "policy_dir",
        _parse_optional_str,
        None,
        "Directory of Rego policies and data the managed OPA loads and watches. "
        "Unset: the bundled policy library.",
    ),
    Setting(
        "shadow_policy_dir",
        _parse_optional_str,
        None,
        "Shadow mode: a candidate policy directory, served by a second managed OPA, that "
        "decides every request again off the request path; disagreements with the active "
        "policies are logged (logger `mlflow_secure.policy.shadow`), only the active ones are "
        "enforced. Unset: shadow mode off.",
    ),
    Setting(
        "decision_cache_ttl",
        _parse_non_negative_float,
        30.0,
        "Seconds a policy answer may be reused for a request with the same input (request "
        "time aside) under the same policy revision; `0` turns reuse off. Never reused: "
        "answers of a policy that reads the time, calls a nondeterministic built-in or reads "
        "data outside data.mlflow; any answer while the managed OPA is not running or the "
        "revision cannot be read. A policy change reaches reused answers within 2 s.",
    ),
    Setting(
        "opa_timeout",
        _parse_positive_float,
        0.5,
        "Seconds allowed to connect to OPA, and how long OPA may stay silent before its "
        "process is checked: a stopped or dead OPA is refused (503), a running one is waited "
        "for up to 5 s of silence (or this value if longer); a decision merely queued behind "
        "load is never refused.",
    ),
    Setting(
        "opa_startup_timeout",
        _parse_positive_float,
        30.0,
        "Seconds the server waits at start-up for OPA to answer before it refuses to start "
        "(managed OPA) or starts answering 503 (external OPA).",
    ),
    Setting(
        "runtime_dir",
        _parse_optional_str,
        None,
        "Private directory (mode 0700) for the managed OPA's socket and lock. "
        "Unset: `$XDG_RUNTIME_DIR/mlflow-secure` or `/tmp/mlflow-secure-<uid>`.",
    ),
    Setting(
        "tools_dir",
        _parse_optional_str,
        None,
        "Cache of tools built by `mlflow-secure opa install`, keyed by version. "
        "Unset: `$XDG_CACHE_HOME/mlflow-secure/tools` or `~/.cache/mlflow-secure/tools`.",
    ),
    Setting(
        "allow_insecure_bind",
        _parse_bool,
        False,
        "Allow listening on a non-loopback address without TLS (for example behind a TLS "
        "proxy on another host). Off: such a bind refuses to start.",
    ),
    Setting(
        "database_uri",
        _parse_optional_str,
        None,
        "SQLAlchemy URI of the identity store (principals, teams, projects, API keys). Unset: "
        "`<tracking db>-secure.db` beside an SQLite tracking database, else the tracking "
        "database itself (tables prefixed `mls_`).",
    ),
    Setting(
        "bootstrap_admin",
        _parse_str,
        "admin",
        "Name of the administrator created on first start when the store has none.",
    ),
    Setting(
        "bootstrap_admin_key",
        _parse_optional_str,
        None,
        "An API key (from `mlflow-secure keys generate`) to give that first administrator. "
        "Unset: a random key is written to the bootstrap key file. A secret: set it from your "
        "secret manager, never in a file under version control.",
    ),
    Setting(
        "bootstrap_key_file",
        _parse_optional_str,
        None,
        "Where the first administrator's random API key is written (mode 0600). Unset: "
        "`mlflow-secure-admin.key` beside an SQLite identity store, else "
        "`~/.config/mlflow-secure/admin.key`.",
    ),
    Setting(
        "oidc_issuer",
        _parse_optional_str,
        None,
        "Issuer (`iss`) of OIDC tokens accepted as `Authorization: Bearer <JWT>`. Unset: OIDC off.",
    ),
    Setting(
        "oidc_audience",
        _parse_optional_str,
        None,
        "Audience (`aud`) OIDC tokens must carry; required when `MLFLOW_SECURE_OIDC_ISSUER` "
        "is set.",
    ),
    Setting(
        "oidc_jwks_url",
        _parse_optional_str,
        None,
        "JWKS URL of the issuer. Unset: discovered from "
        "`<issuer>/.well-known/openid-configuration`.",
    ),
    Setting(
        "oidc_username_claim",
        _parse_str,
        "preferred_username",
        "Claim naming the principal (falls back to `sub`). It must match a user or service "
        "account name in the identity store.",
    ),
    Setting(
        "oidc_groups_claim",
        _parse_str,
        "groups",
        "Claim listing the caller's groups; groups named like a team count as membership of it.",
    ),
    Setting(
        "oidc_auto_provision",
        _parse_bool,
        False,
        "Create a user (no roles, default clearance) on the first valid token of an unknown "
        "name. Off: unknown names are refused.",
    ),
    Setting(
        "auth_max_failures",
        _parse_positive_int,
        10,
        "Failed authentications from one client address, or for one account's password, "
        "within the failure window before further attempts are refused with 429 — a locked "
        "account's correct password too.",
    ),
    Setting(
        "auth_failure_window",
        _parse_positive_float,
        300.0,
        "Seconds over which failed authentications are counted.",
    ),
    Setting(
        "trusted_proxies",
        _parse_optional_str,
        None,
        "Comma-separated addresses or CIDRs of reverse proxies whose `X-Forwarded-For` / "
        "`Forwarded` headers name the client. Unset: headers ignored, the peer address is "
        "the client. The HTTP server's own proxy handling (uvicorn's and gunicorn's "
        "forwarded-allow list, waitress's header clearing) is set from it; a "
        "`FORWARDED_ALLOW_IPS`, `--forwarded-allow-ips` or `--trusted-proxy` that disagrees "
        "refuses start-up ([operations](operations.md#client-addresses)).",
    ),
    Setting(
        "audit_log_file",
        _parse_optional_str,
        None,
        "Also append every audit event, hash-chained, to this JSON lines file (mode 0600). "
        "Unset: the database only.",
    ),
    Setting(
        "encrypt_from",
        _parse_encrypt_from,
        "confidential",
        "The lowest classification whose artefacts the client plugin must encrypt "
        "(`public`, `internal`, `confidential`, `restricted`, or `never`); an unclassified "
        "experiment counts as `internal`, an unknown classification is always encrypted "
        "([encryption](encryption.md)).",
    ),
    Setting(
        "master_key",
        _parse_optional_str,
        None,
        "The key service's master key (base64 of 32 random bytes, from `mlflow-secure keys "
        "generate-master-key`), which wraps every project key. A secret: inject it from your "
        "secret manager. Takes precedence over the key file.",
    ),
    Setting(
        "master_key_file",
        _parse_optional_str,
        None,
        "File holding the master key (the same text, mode 0600; other modes refuse start-up). "
        "Unset, and no master key given: `<identity db>-master.key` beside an SQLite identity "
        "store, created on first start; with a server database the key service answers 503 "
        "until one is configured ([encryption](encryption.md)).",
    ),
    Setting(
        "auth_block_seconds",
        _parse_positive_float,
        300.0,
        "Seconds a throttled client or account must wait (`Retry-After`).",
    ),
)


@dataclass(frozen=True)
class Settings:
    opa_url: str | None = None
    opa_binary: str | None = None
    policy_dir: str | None = None
    shadow_policy_dir: str | None = None
    decision_cache_ttl: float = 30.0
    opa_timeout: float = 0.5
    opa_startup_timeout: float = 30.0
    runtime_dir: str | None = None
    tools_dir: str | None = None
    allow_insecure_bind: bool = False
    database_uri: str | None = None
    bootstrap_admin: str = "admin"
    bootstrap_admin_key: str | None = field(default=None, repr=False)
    bootstrap_key_file: str | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_username_claim: str = "preferred_username"
    oidc_groups_claim: str = "groups"
    oidc_auto_provision: bool = False
    auth_max_failures: int = 10
    auth_failure_window: float = 300.0
    auth_block_seconds: float = 300.0
    trusted_proxies: str | None = None
    audit_log_file: str | None = None
    encrypt_from: str = "confidential"
    master_key: str | None = field(default=None, repr=False)  # a secret: never in a repr
    master_key_file: str | None = None


def _read_config_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{CONFIG_FILE_ENV} names {path!r}, which does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{CONFIG_FILE_ENV} file {path!r} is not valid TOML: {exc}") from None
    known = {setting.name for setting in SETTINGS}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"{CONFIG_FILE_ENV} file {path!r} has unknown settings {unknown}; "
            f"known settings are {sorted(known)}"
        )
    return data


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings once, failing with a message that names the variable and the problem."""
    env = os.environ if environ is None else environ
    from_file: dict[str, Any] = {}
    if config_path := env.get(CONFIG_FILE_ENV):
        from_file = _read_config_file(config_path)

    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.env in env:
            raw, source = env[setting.env], setting.env
        elif setting.name in from_file:
            raw, source = from_file[setting.name], f"{setting.name} in {env[CONFIG_FILE_ENV]}"
            # TOML already typed it; normalise to the string form the parsers take.
            raw = str(raw).lower() if isinstance(raw, bool) else str(raw)
        else:
            values[setting.name] = setting.default
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{source} has an invalid value: {exc}") from None
    return Settings(**values)


def runtime_root(settings: Settings) -> Path:
    if settings.runtime_dir:
        return Path(settings.runtime_dir)
    if xdg := os.environ.get("XDG_RUNTIME_DIR"):
        return Path(xdg) / "mlflow-secure"
    return Path("/tmp") / f"mlflow-secure-{os.getuid()}"  # noqa: S108 - private 0700, owner-checked


def tools_root(settings: Settings) -> Path:
    if settings.tools_dir:
        return Path(settings.tools_dir)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mlflow-secure" / "tools"


def bundled_policy_dir() -> Path:
    """The policy library: inside the wheel, or ./rego at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "rego"
    if packaged.is_dir():
        return packaged
    return here.parent.parent / "rego"


def policy_dir(settings: Settings) -> Path:
    return Path(settings.policy_dir) if settings.policy_dir else bundled_policy_dir()
