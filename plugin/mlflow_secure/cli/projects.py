"""`mlflow-secure projects`: projects and who holds which role in them."""

from __future__ import annotations

import click

from mlflow_secure.cli.connection import Out, with_client
from mlflow_secure.cli.output import table
from mlflow_secure.cli.params import PROJECT_ROLES, confirm, member, with_member, yes_option


@click.group("projects")
def projects() -> None:
    """Projects (experiments tagged mlflow.secure.project) and who holds which role in them."""


@projects.command("create")
@click.argument("name")
@click.option("--description")
@with_client
def projects_create(out: Out, name: str, description: str | None) -> None:
    """Create a project."""
    payload = out.client.create_project(name, description)
    out.show(payload, lambda: click.echo(f"Created project {name}"))


@projects.command("list")
@with_client
def projects_list(out: Out) -> None:
    """List projects and their members."""
    payload = out.client.list_projects()
    rows = [
        (
            p["name"],
            [f"{m.get('principal') or 'team:' + m['team']}={m['role']}" for m in p["members"]],
            p["description"],
        )
        for p in payload["projects"]
    ]
    out.show(payload, lambda: table(("PROJECT", "MEMBERS", "DESCRIPTION"), rows))


@projects.command("delete")
@click.argument("name")
@yes_option
@with_client
def projects_delete(out: Out, name: str, yes: bool) -> None:
    """Delete a project and its memberships."""
    confirm(yes, f"Delete project {name!r}?")
    payload = out.client.delete_project(name)
    out.show(payload, lambda: click.echo(f"Deleted project {name}"))


@projects.command("set-member")
@click.argument("project")
@click.option("--role", required=True, type=click.Choice(PROJECT_ROLES))
@with_member
@with_client
def projects_set_member(
    out: Out,
    project: str,
    role: str,
    user: str | None,
    service_account: str | None,
    team: str | None,
) -> None:
    """Give a user, service account or team a role in PROJECT (replacing any old one)."""
    principal, team = member(user, service_account, team)
    payload = out.client.set_project_member(project, role, principal=principal, team=team)
    who = principal or f"team {team}"
    out.show(payload, lambda: click.echo(f"{who} is now {role} in project {project}"))


@projects.command("remove-member")
@click.argument("project")
@with_member
@with_client
def projects_remove_member(
    out: Out, project: str, user: str | None, service_account: str | None, team: str | None
) -> None:
    """Remove a user, service account or team from PROJECT."""
    principal, team = member(user, service_account, team)
    payload = out.client.remove_project_member(project, principal=principal, team=team)
    who = principal or f"team {team}"
    out.show(payload, lambda: click.echo(f"Removed {who} from project {project}"))
