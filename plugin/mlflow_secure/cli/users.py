"""`mlflow-secure users` and `mlflow-secure service-accounts`: principals and their details."""

from __future__ import annotations

from typing import Any

import click

from mlflow_secure.cli.connection import Out, with_client
from mlflow_secure.cli.output import details, table
from mlflow_secure.cli.params import (
    CLEARANCES,
    GLOBAL_ROLES,
    confirm,
    password_options,
    read_password,
    yes_option,
)


def _principal_rows(principals: list[dict[str, Any]]) -> None:
    table(
        ("NAME", "KIND", "ROLES", "CLEARANCE", "OWNER", "DISABLED", "PASSWORD", "EMAIL"),
        [
            (
                p["name"],
                p["kind"],
                p["roles"],
                p["clearance"],
                p["owner"] or p["owner_team"],
                p["disabled"],
                p["has_password"],
                p["email"],
            )
            for p in principals
        ],
    )


def _principal_details(principal: dict[str, Any]) -> None:
    click.echo(f"{principal['name']} ({principal['kind']})")
    pairs = [
        ("display name", principal["display_name"]),
        ("email", principal["email"]),
        ("roles", principal["roles"]),
        ("clearance", principal["clearance"]),
        ("disabled", principal["disabled"]),
        ("password", "set" if principal["has_password"] else "not set"),
    ]
    if principal["kind"] == "service":
        pairs += [("owner", principal["owner"]), ("owner team", principal["owner_team"])]
    if "teams" in principal:
        projects = [f"{p['name']}:{p['role']} ({p['via']})" for p in principal["projects"]]
        pairs += [("teams", principal["teams"]), ("projects", projects)]
    if "default_project" in principal:
        pairs.append(("default project", principal["default_project"]))
    pairs += [("created", principal["created_at"]), ("updated", principal["updated_at"])]
    details(pairs)


# ---------------------------------------------------------------- users


@click.group("users")
def users() -> None:
    """People (and, for get/list/update, any principal)."""


@users.command("create")
@click.argument("name")
@password_options
@click.option("--role", "roles", multiple=True, type=click.Choice(GLOBAL_ROLES), help="Repeatable.")
@click.option("--clearance", type=click.Choice(CLEARANCES), help="Default: internal.")
@click.option("--email")
@click.option("--display-name")
@with_client
def users_create(
    out: Out,
    name: str,
    password_prompt: bool,
    password_stdin: bool,
    roles: tuple[str, ...],
    clearance: str | None,
    email: str | None,
    display_name: str | None,
) -> None:
    """Create a user; a password (optional) lets them sign in to the MLflow UI."""
    payload = out.client.create_user(
        name,
        display_name=display_name,
        email=email,
        password=read_password(password_prompt, password_stdin),
        roles=list(roles) or None,
        clearance=clearance,
    )
    out.show(payload, lambda: click.echo(f"Created user {payload['user']['name']}"))


@users.command("get")
@click.argument("name")
@with_client
def users_get(out: Out, name: str) -> None:
    """Show a principal, its teams and its project memberships."""
    payload = out.client.get_user(name)
    out.show(payload, lambda: _principal_details(payload["user"]))


@users.command("list")
@click.option("--kind", type=click.Choice(("user", "service")), help="Only this kind.")
@with_client
def users_list(out: Out, kind: str | None) -> None:
    """List principals (people and service accounts)."""
    payload = out.client.list_users(kind)
    out.show(payload, lambda: _principal_rows(payload["users"]))


@users.command("update")
@click.argument("name")
@password_options
@click.option("--display-name")
@click.option("--email")
@click.option("--clearance", type=click.Choice(CLEARANCES))
@click.option("--disable/--enable", "disabled", default=None, help="Block or allow sign-in.")
@click.option(
    "--default-project",
    metavar="PROJECT",
    help="Where the principal's experiments and registered models go when created without "
    "an mlflow.secure.project tag and without MLFLOW_SECURE_PROJECT; a project the principal "
    'is a member of. "" clears it.',
)
@with_client
def users_update(
    out: Out,
    name: str,
    password_prompt: bool,
    password_stdin: bool,
    display_name: str | None,
    email: str | None,
    clearance: str | None,
    disabled: bool | None,
    default_project: str | None,
) -> None:
    """Change a principal's details, password, clearance, default project or whether it is
    disabled (for service accounts too)."""
    payload = out.client.update_user(
        name,
        display_name=display_name,
        email=email,
        password=read_password(password_prompt, password_stdin),
        clearance=clearance,
        disabled=disabled,
        default_project=default_project,
    )
    out.show(payload, lambda: click.echo(f"Updated {payload['user']['name']}"))


@users.command("delete")
@click.argument("name")
@yes_option
@with_client
def users_delete(out: Out, name: str, yes: bool) -> None:
    """Delete a user and their API keys."""
    confirm(yes, f"Delete user {name!r} and all their API keys?")
    payload = out.client.delete_user(name)
    out.show(payload, lambda: click.echo(f"Deleted user {name}"))


# ---------------------------------------------------------------- service accounts


@click.group("service-accounts")
def service_accounts() -> None:
    """Non-human principals (CI jobs, pipelines), which authenticate with API keys."""


@service_accounts.command("create")
@click.argument("name")
@click.option("--owner", help="The accountable person (default: you, unless --owner-team).")
@click.option("--owner-team", help="The accountable team.")
@click.option("--role", "roles", multiple=True, type=click.Choice(GLOBAL_ROLES), help="Repeatable.")
@click.option("--clearance", type=click.Choice(CLEARANCES), help="Default: internal.")
@click.option("--display-name")
@with_client
def service_accounts_create(
    out: Out,
    name: str,
    owner: str | None,
    owner_team: str | None,
    roles: tuple[str, ...],
    clearance: str | None,
    display_name: str | None,
) -> None:
    """Create a service account (then give it a key with `keys create --service-account`)."""
    payload = out.client.create_service_account(
        name,
        owner=owner,
        owner_team=owner_team,
        roles=list(roles) or None,
        clearance=clearance,
        display_name=display_name,
    )
    account = payload["service_account"]
    out.show(
        payload,
        lambda: click.echo(
            f"Created service account {account['name']} "
            f"(owner: {account['owner'] or account['owner_team']})"
        ),
    )


@service_accounts.command("list")
@with_client
def service_accounts_list(out: Out) -> None:
    """List service accounts and who owns them."""
    payload = out.client.list_service_accounts()
    out.show(payload, lambda: _principal_rows(payload["service_accounts"]))


@service_accounts.command("delete")
@click.argument("name")
@yes_option
@with_client
def service_accounts_delete(out: Out, name: str, yes: bool) -> None:
    """Delete a service account and its API keys."""
    confirm(yes, f"Delete service account {name!r} and all its API keys?")
    payload = out.client.delete_service_account(name)
    out.show(payload, lambda: click.echo(f"Deleted service account {name}"))
