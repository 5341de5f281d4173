"""`mlflow-secure teams`: groups of principals that can be given project roles together."""

from __future__ import annotations

import click

from mlflow_secure.cli.connection import Out, with_client
from mlflow_secure.cli.output import table
from mlflow_secure.cli.params import confirm, yes_option


@click.group("teams")
def teams() -> None:
    """Teams: groups of principals that can be given project roles together."""


@teams.command("create")
@click.argument("name")
@click.option("--description")
@with_client
def teams_create(out: Out, name: str, description: str | None) -> None:
    """Create a team."""
    payload = out.client.create_team(name, description)
    out.show(payload, lambda: click.echo(f"Created team {name}"))


@teams.command("list")
@with_client
def teams_list(out: Out) -> None:
    """List teams and their members."""
    payload = out.client.list_teams()
    rows = [(t["name"], t["members"], t["description"]) for t in payload["teams"]]
    out.show(payload, lambda: table(("TEAM", "MEMBERS", "DESCRIPTION"), rows))


@teams.command("delete")
@click.argument("name")
@yes_option
@with_client
def teams_delete(out: Out, name: str, yes: bool) -> None:
    """Delete a team (its members lose the project roles it gave them)."""
    confirm(yes, f"Delete team {name!r}?")
    payload = out.client.delete_team(name)
    out.show(payload, lambda: click.echo(f"Deleted team {name}"))


@teams.command("add-member")
@click.argument("team")
@click.argument("principal")
@with_client
def teams_add_member(out: Out, team: str, principal: str) -> None:
    """Add PRINCIPAL to TEAM."""
    payload = out.client.add_team_member(team, principal)
    out.show(payload, lambda: click.echo(f"Added {principal} to team {team}"))


@teams.command("remove-member")
@click.argument("team")
@click.argument("principal")
@with_client
def teams_remove_member(out: Out, team: str, principal: str) -> None:
    """Remove PRINCIPAL from TEAM."""
    payload = out.client.remove_team_member(team, principal)
    out.show(payload, lambda: click.echo(f"Removed {principal} from team {team}"))
