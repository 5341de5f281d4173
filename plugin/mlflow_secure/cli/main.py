"""`mlflow-secure`: the operator's and policy author's command line (one group per capability).

Start-up is kept short: each sub-command's module is imported only when that command runs
(`LazyGroup`), and the identity commands, which talk HTTP to a server, never import MLflow,
SQLAlchemy or the server app.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from mlflow_secure.cli.identity import IDENTITY_COMMANDS, load_command

COMMANDS = {
    "opa": "mlflow_secure.cli.opa:opa",
    "policy": "mlflow_secure.cli.policy:policy",
    "audit": "mlflow_secure.cli.audit:audit",
    **IDENTITY_COMMANDS,
}


class LazyGroup(click.Group):
    """A group whose sub-commands are ``"module:attribute"`` names, imported on first use."""

    def __init__(self, *args: Any, lazy_commands: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            self.add_command(load_command(self.lazy_commands[cmd_name]), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, lazy_commands=COMMANDS)
@click.version_option(package_name="mlflow-secure")
def main() -> None:
    """Security layer for MLflow tracking servers."""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
