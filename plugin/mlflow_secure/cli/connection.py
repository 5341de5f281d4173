"""How an identity command reaches the server: `--tracking-uri`, `--json`, clean errors.

The commands are thin: the server (and its policy) decides everything, the CLI only shapes
arguments and output. Requests go over `HttpTransport` (no MLflow import, so the CLI answers
in well under a second), or MLflow's own client when the environment asks for something only
it can do (`needs_mlflow`).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from mlflow_secure.admin.client import SecureAdminClient, Transport
from mlflow_secure.cli.transport import AdminApiError, HttpTransport, MlflowFallback, needs_mlflow
from mlflow_secure.client.errors import ClientError

CLI_MAX_RETRIES = 2  # fail fast at a terminal; MLFLOW_HTTP_REQUEST_MAX_RETRIES overrides


@dataclass(frozen=True)
class Out:
    """What every command gets: the client, and whether to print JSON."""

    client: SecureAdminClient
    as_json: bool

    def show(self, payload: dict[str, Any], human: Callable[[], None]) -> None:
        if self.as_json:
            click.echo(json.dumps(payload, indent=2, sort_keys=True))
        else:
            human()


def error_message(exc: AdminApiError | ClientError) -> str:
    """The server's own words, plus a denial's reasons and decision id to quote to an admin."""
    body = exc.body if isinstance(exc, AdminApiError) else {}
    lines = [str(body.get("message") or exc.message)]
    reasons = body.get("reasons")
    if isinstance(reasons, list):
        lines += [f"  reason: {reason}" for reason in reasons]
    if body.get("decision_id"):
        lines.append(f"  decision id: {body['decision_id']}")
    return "\n".join(lines)


def make_client(tracking_uri: str) -> SecureAdminClient:
    retries = None if os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES") else CLI_MAX_RETRIES
    transport: Transport
    if needs_mlflow():
        transport = MlflowFallback(tracking_uri, max_retries=retries)
    else:
        transport = HttpTransport(tracking_uri, max_retries=retries)
    return SecureAdminClient(tracking_uri, max_retries=retries, transport=transport)


def with_client(func: Callable[..., None]) -> Callable[..., None]:
    """Adds `--tracking-uri` and `--json`, and turns server errors into one clean line."""

    @click.option("--json", "as_json", is_flag=True, help="Print the server's JSON answer.")
    @click.option(
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        required=True,
        metavar="URI",
        help="The tracking server (default: $MLFLOW_TRACKING_URI).",
    )
    @functools.wraps(func)
    def wrapper(tracking_uri: str, as_json: bool, **kwargs: Any) -> None:
        try:
            func(Out(make_client(tracking_uri), as_json), **kwargs)
        except (AdminApiError, ClientError) as exc:
            raise click.ClickException(error_message(exc)) from None

    return wrapper
