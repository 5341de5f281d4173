"""`mlflow-secure whoami`: who the server thinks you are, as its policy sees you."""

from __future__ import annotations

import click

from mlflow_secure.cli.connection import Out, with_client
from mlflow_secure.cli.output import details
from mlflow_secure.cli.params import KEY_PREFIX


@click.command("whoami")
@with_client
def whoami(out: Out) -> None:
    """Show who the server thinks you are, as its policy sees you."""
    payload = out.client.whoami()

    def human() -> None:
        subject = payload["subject"]
        click.echo(f"{subject['id']} ({subject['kind']}, authenticated by {subject['auth']})")
        projects = [f"{p['name']}:{p['role']}" for p in subject.get("projects") or []]
        pairs: list[tuple[str, object]] = [
            ("roles", subject.get("roles")),
            ("teams", subject.get("teams")),
            ("projects", projects),
        ]
        if "default_project" in subject:
            pairs.append(("default project", subject["default_project"]))
        pairs += [
            ("clearance", subject.get("clearance")),
            ("scopes", subject.get("scopes")),
        ]
        if subject.get("key_id"):
            pairs.append(("key", f"{KEY_PREFIX}{subject['key_id']}…"))
            pairs.append(("key projects", subject.get("key_projects") or "not limited"))
        details(pairs)

    out.show(payload, human)
