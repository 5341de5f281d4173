"""`mlflow-secure keys|users|service-accounts|teams|projects|roles|whoami`: identity admin.

Thin commands over `SecureAdminClient`: the server (and its policy) decides everything, the
CLI only shapes arguments and output. Readable tables by default, ``--json`` for scripts.
Each group lives in its own module (`keys`, `users`, `roles`, `teams`, `projects`, `whoami`);
this one attaches them all to a group.

Secrets: passwords are read only from a hidden, confirmed prompt or from stdin (never from an
argument, which would land in shell history and ``ps``); an API key is printed exactly once,
by the command that created it.
"""

from __future__ import annotations

import importlib

import click

# Command name -> "module:attribute"; `mlflow_secure.cli.main` loads them lazily from here.
IDENTITY_COMMANDS = {
    "keys": "mlflow_secure.cli.keys:keys",
    "users": "mlflow_secure.cli.users:users",
    "service-accounts": "mlflow_secure.cli.users:service_accounts",
    "teams": "mlflow_secure.cli.teams:teams",
    "projects": "mlflow_secure.cli.projects:projects",
    "roles": "mlflow_secure.cli.roles:roles",
    "whoami": "mlflow_secure.cli.whoami:whoami",
}


def load_command(target: str) -> click.Command:
    """The command object named by ``"module:attribute"``, importing its module."""
    module_name, _, attribute = target.partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):  # pragma: no cover - a wiring mistake
        raise TypeError(f"{target} is not a click command")
    return command


def register(main: click.Group) -> None:
    """Attach the identity commands to the `mlflow-secure` group."""
    for target in IDENTITY_COMMANDS.values():
        main.add_command(load_command(target))
