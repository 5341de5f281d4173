"""`mlflow-secure opa`: the OPA executable the managed policy engine runs, and external OPAs."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import click

from mlflow_secure.config import ConfigError, Settings, load_settings
from mlflow_secure.policy.toolchain import (
    OPA_PINNED_VERSION,
    OpaToolchainError,
    find_opa,
    install_opa,
    opa_version,
)


def settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def opa_binary() -> Path:
    """The OPA the server would run, or a clean error saying how to get one."""
    try:
        return find_opa(settings())
    except OpaToolchainError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def opa() -> None:
    """The OPA executable the managed policy engine runs."""


@opa.command("install")
@click.option("--version", "version", default=OPA_PINNED_VERSION, show_default=True)
@click.option(
    "--link-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also place an `opa` symlink here (for example .tools/bin).",
)
def opa_install(version: str, link_dir: Path | None) -> None:
    """Build OPA from its Go module into the tools cache (reused when already built)."""
    try:
        path = install_opa(settings(), version.lstrip("v"), link_dir)
    except OpaToolchainError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"OPA {opa_version(path)} at {path}")


@opa.command("which")
def opa_which() -> None:
    """Show which OPA the server would run, and its version."""
    path = opa_binary()
    click.echo(f"{path} (OPA {opa_version(path)})")


@opa.command("status")
@click.option("--url", help="OPA to probe; defaults to MLFLOW_SECURE_OPA_URL.")
def opa_status(url: str | None) -> None:
    """Check that an external OPA answers a well-formed decision with our policies."""
    from mlflow_secure.policy.client import DecisionClient, PolicyUnavailable, parse_opa_url
    from mlflow_secure.policy.engine import PROBE_INPUT
    from mlflow_secure.policy.revision import fetch_revision

    current = settings()
    target = url or current.opa_url
    if not target:
        raise click.ClickException(
            "no external OPA configured (MLFLOW_SECURE_OPA_URL is unset): the server manages "
            "its own; `curl /health` on the server reports its readiness"
        )
    try:
        endpoint = parse_opa_url(target)
        client = DecisionClient(endpoint, current.opa_timeout)
        decision = client.decide_sync(PROBE_INPUT)
    except (ConfigError, PolicyUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"OPA at {target} answers: probe decision allow={decision.allow}")
    try:
        click.echo(f"  policy revision: {fetch_revision(client)}")
    except PolicyUnavailable as exc:  # the decision already answered; this is informational
        click.echo(f"  policy revision: unknown ({exc})")
    if endpoint.uds is None:
        for module in _loaded_policy_modules(target):
            click.echo(f"  policy module: {module}")


def _loaded_policy_modules(url: str) -> list[str]:
    """Which policy modules a (TCP) OPA serves, via the OPA REST client library."""
    from opa_client.opa import OpaClient

    parts = urlsplit(url)
    https = parts.scheme == "https"
    client = OpaClient(host=parts.hostname, port=parts.port or (443 if https else 80), ssl=https)
    try:
        return sorted(client.get_policies_list())
    except Exception as exc:  # the decision already answered; this listing is informational
        return [f"(cannot list policies: {type(exc).__name__})"]
    finally:
        client.close_connection()
