"""`mlflow-secure keys`: API keys (create, list, revoke, rotate, generate one offline) and
projects' encryption keys (rotate --project, status, retire, destroy, generate-master-key).

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
    """API keys, and projects' encryption keys."""


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
@click.argument("key_id", required=False)
@click.option("--project", help="Rotate this project's encryption key instead of an API key.")
@click.option(
    "--grace",
    type=Duration(allow_zero=True),
    default="1h",
    show_default=True,
    help="How long the old API key keeps working (0 ends it now).",
)
@with_client
def keys_rotate(out: Out, key_id: str | None, project: str | None, grace: int) -> None:
    """Replace an API key with a new one (same owner, scopes and projects), or, with
    --project, give a project a new encryption key version (data keys re-wrapped, artefacts
    not rewritten)."""
    if (key_id is None) == (project is None):
        raise click.UsageError("give either an API KEY_ID or --project, not both")
    if project is not None:
        rotated = out.client.rotate_project_key(project)
        out.show(
            rotated,
            lambda: click.echo(
                f"Project {project}: key version {rotated['version']} is active; "
                f"{rotated['rewrapped']} data key(s) re-wrapped, no artefact rewritten."
            ),
        )
        return
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


@keys.command("status")
@click.option("--project", required=True, help="The project whose encryption keys to show.")
@with_client
def keys_status(out: Out, project: str) -> None:
    """A project's encryption key versions: state, age and how many data keys each wraps."""
    payload = out.client.project_keys(project)
    rows = [
        (v["version"], v["state"], when(v["created_at"]), v["created_by"], v["data_keys"])
        for v in payload["versions"]
    ]

    def human() -> None:
        if not rows:
            click.echo(f"Project {project} has no encryption keys yet (made on first use).")
            return
        table(("VERSION", "STATE", "CREATED", "BY", "DATA KEYS"), rows)

    out.show(payload, human)


@keys.command("retire")
@click.option("--project", required=True)
@click.option("--version", "version", type=click.IntRange(min=1), required=True)
@with_client
def keys_retire(out: Out, project: str, version: int) -> None:
    """Erase a superseded project key version (after `keys rotate --project`)."""
    payload = out.client.retire_project_key(project, version)
    out.show(payload, lambda: click.echo(f"Project {project}: key version {version} retired."))


@keys.command("destroy")
@click.option("--project", required=True)
@click.option("--yes", is_flag=True, help="Do not ask; for scripts that already confirmed.")
@with_client
def keys_destroy(out: Out, project: str, yes: bool) -> None:
    """Crypto-shred a project: erase every key, so that no one can ever decrypt its
    artefacts again (the bucket's bytes stay, unreadable). Asks for the project's name."""
    if not yes:
        click.echo(
            f"This erases every encryption key of project {project!r}: its artefacts can "
            "never be decrypted again, by anyone."
        )
        typed = click.prompt("Type the project's name to confirm", default="", show_default=False)
        if typed != project:
            raise click.ClickException("not confirmed; nothing was destroyed")
    payload = out.client.destroy_project_keys(project, project)
    out.show(
        payload,
        lambda: click.echo(
            f"Project {project}: {payload['destroyed_versions']} key version(s) and "
            f"{payload['data_keys_erased']} data key(s) destroyed."
        ),
    )


@keys.command("generate-master-key")
def keys_generate_master_key() -> None:
    """Print a new random master key for the key service (MLFLOW_SECURE_MASTER_KEY or the
    file named by MLFLOW_SECURE_MASTER_KEY_FILE), without contacting a server."""
    import base64
    import os

    click.echo(base64.b64encode(os.urandom(32)).decode())


@keys.command("generate")
def keys_generate() -> None:
    """Print a new random API key without contacting a server.

    For MLFLOW_SECURE_BOOTSTRAP_ADMIN_KEY: generate it into your secret manager, and the
    server registers it for the first administrator on its first start.
    """
    from mlflow_secure.identity import api_keys

    click.echo(api_keys.generate()[0])
