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
from dataclasses import dataclass
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


def _parse_optional_str(value: str) -> str | None:
    return value.strip() or None


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
        "opa_timeout",
        _parse_positive_float,
        0.5,
        "Seconds to wait for one policy decision; past it the request is refused with 503.",
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
)


@dataclass(frozen=True)
class Settings:
    opa_url: str | None = None
    opa_binary: str | None = None
    policy_dir: str | None = None
    opa_timeout: float = 0.5
    opa_startup_timeout: float = 30.0
    runtime_dir: str | None = None
    tools_dir: str | None = None
    allow_insecure_bind: bool = False


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
