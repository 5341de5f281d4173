"""`mlflow-secure roles`: grant and revoke the global roles (admin, auditor)."""

from __future__ import annotations

import click

from mlflow_secure.cli.connection import Out, with_client
from mlflow_secure.cli.params import GLOBAL_ROLES


@click.group("roles")
def roles() -> None:
    """Global roles: admin, auditor."""


@roles.command("grant")
@click.argument("principal")
@click.argument("role", type=click.Choice(GLOBAL_ROLES))
@with_client
def roles_grant(out: Out, principal: str, role: str) -> None:
    """Grant PRINCIPAL the global ROLE."""
    payload = out.client.grant_role(principal, role)
    out.show(payload, lambda: click.echo(f"Granted {role} to {principal}"))


@roles.command("revoke")
@click.argument("principal")
@click.argument("role", type=click.Choice(GLOBAL_ROLES))
@with_client
def roles_revoke(out: Out, principal: str, role: str) -> None:
    """Take the global ROLE away from PRINCIPAL."""
    payload = out.client.revoke_role(principal, role)
    out.show(payload, lambda: click.echo(f"Revoked {role} from {principal}"))
