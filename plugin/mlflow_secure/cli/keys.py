"""`mlflow-secure keys`: create, list, revoke and rotate API keys (and generate one offline).

An API key is printed exactly once, by the command that created it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click

from mlflow_secure.cli.connection import Out, with_client
from mlflow_secure.cli.output import details, parse_iso, table, when
from mlflow_secure.cli.params import KEY_PREFIX, SCOPES, Duration, one_principal
from mlflow_secure.cli.params import key_id as parse_key_id

STORE_IT_NOW = "Store this key now: it is shown only once and cannot be recovered."


@click.group("keys")
def keys() -> None:
    """API keys: create, list, revoke and rotate."""


def _key_status(key: dict[str, Any], now: datetime) -> str:
    if key.get("revoked_at"):
        return "revoked"
    expires = key.get("expires_at")
    if expires and parse_iso(expires) <= now:
        return "expired"
    if key.get("replaced_by"):
        return f"rotated (until {when(expires)})"
    return "active"


def _print_new_key(payload: dict[str, Any], verb: str) -> None:
    record = payload["api_key"]
    click.echo(f"{verb} API key {record['display']} for {record['principal']}")
    details(
        [
            ("name", record["name"]),
            ("scopes", record["scopes"]),
            ("projects", record["projects"] or "all the principal's projects"),
            ("expires", record["expires_at"] or "never"),
        ]
    )
    click.echo("")
    click.echo(payload["key"])
    click.echo("")
    click.echo(STORE_IT_NOW)


@keys.command("create")
@click.option("--user", help="Create the key for this user (default: you).")
@click.option("--service-account", help="Create the key for this service account.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(SCOPES),
    help="What the key may do (repeatable).",
)
@click.option(
    "--project", "projects", multiple=True, help="Limit the key to a project (repeatable)."
)
@click.option("--expires", type=Duration(), help="Lifetime, like 90m, 12h, 30d or 52w.")
@click.option("--name", help="A label to recognise the key by in listings.")
@with_client
def keys_create(
    out: Out,
    user: str | None,
    service_account: str | None,
    scopes: tuple[str, ...],
    projects: tuple[str, ...],
    expires: int | None,
    name: str | None,
) -> None:
    """Create an API key; it is printed once, here, and never again."""
    payload = out.client.create_key(
        list(scopes),
        principal=one_principal(user, service_account),
        name=name,
        projects=list(projects) or None,
        expires_in_seconds=expires,
    )
    out.show(payload, lambda: _print_new_key(payload, "Created"))


@keys.command("list")
@click.option("--user", help="List this user's keys (default: yours).")
@click.option("--service-account", help="List this service account's keys.")
@click.option("--all", "all_keys", is_flag=True, help="List every key.")
@with_client
def keys_list(out: Out, user: str | None, service_account: str | None, all_keys: bool) -> None:
    """List API keys (never their secrets)."""
    principal = one_principal(user, service_account)
    if principal and all_keys:
        raise click.UsageError("give --all or a principal, not both")
    payload = out.client.list_keys(principal, all_keys=all_keys)
    now = datetime.now(UTC)
    rows = [
        (
            key["display"],
            key["principal"],
            key["name"],
            key["scopes"],
            key["projects"] or "all",
            when(key["created_at"]),
            when(key["expires_at"]),
            when(key["last_used_at"]),
            _key_status(key, now),
        )
        for key in payload["api_keys"]
    ]
    headers = ("KEY", "PRINCIPAL", "NAME", "SCOPES", "PROJECTS", "CREATED", "EXPIRES")
    out.show(payload, lambda: table((*headers, "LAST USED", "STATUS"), rows))


@keys.command("revoke")
@click.argument("key_id")
@with_client
def keys_revoke(out: Out, key_id: str) -> None:
    """Revoke an API key now (KEY_ID as shown by `keys list`)."""
    payload = out.client.revoke_key(parse_key_id(key_id))
    record = payload["api_key"]
    out.show(payload, lambda: click.echo(f"Revoked API key {record['display']}"))


@keys.command("rotate")
@click.argument("key_id")
@click.option(
    "--grace",
    type=Duration(allow_zero=True),
    default="1h",
    show_default=True,
    help="How long the old key keeps working (0 ends it now).",
)
@with_client
def keys_rotate(out: Out, key_id: str, grace: int) -> None:
    """Replace an API key with a new one (same owner, scopes and projects)."""
    old = parse_key_id(key_id)
    payload = out.client.rotate_key(old, grace_seconds=grace)

    def human() -> None:
        _print_new_key(payload, "Rotated to")
        if grace:
            until = (datetime.now(UTC) + timedelta(seconds=grace)).isoformat(timespec="seconds")
            click.echo(f"The old key {KEY_PREFIX}{old}… keeps working until about {until}.")
        else:
            click.echo(f"The old key {KEY_PREFIX}{old}… no longer works.")

    out.show(payload, human)


@keys.command("generate")
def keys_generate() -> None:
    """Print a new random API key without contacting a server.

    For MLFLOW_SECURE_BOOTSTRAP_ADMIN_KEY: generate it into your secret manager, and the
    server registers it for the first administrator on its first start.
    """
    from mlflow_secure.identity import api_keys

    click.echo(api_keys.generate()[0])
