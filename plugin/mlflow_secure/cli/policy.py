"""`mlflow-secure policy`: check, test and explain the Rego policy library."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import click

from mlflow_secure.cli.opa import opa_binary, settings
from mlflow_secure.config import policy_dir


@click.group()
def policy() -> None:
    """Check and test the Rego policy library."""


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False)


@policy.command("test")
@click.option(
    "--dir",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Policy directory; defaults to MLFLOW_SECURE_POLICY_DIR or the bundled library.",
)
@click.option("--threshold", default=100.0, show_default=True, help="Minimum coverage in %.")
def policy_test(directory: Path | None, threshold: float) -> None:
    """`opa check --strict`, `opa fmt`, `opa test` and coverage, as CI runs them."""
    binary = str(opa_binary())
    target = str(directory or policy_dir(settings()))
    steps = [
        ("opa check --strict", [binary, "check", "--strict", target]),
        ("opa fmt --list --fail", [binary, "fmt", "--list", "--fail", target]),
        ("opa test", [binary, "test", target]),
    ]
    for label, command in steps:
        result = _run(command)
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0:
            raise click.ClickException(f"{label} failed:\n{output or '(files need opa fmt)'}")
        click.echo(f"{label}: ok" + (f"\n{output.splitlines()[-1]}" if output else ""))

    result = _run([binary, "test", "--coverage", target])
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise click.ClickException(f"opa test --coverage failed:\n{result.stderr}") from None
    coverage = float(report.get("coverage", 0.0))
    click.echo(f"policy coverage: {coverage:.1f}% (threshold {threshold:g}%)")
    if coverage < threshold:
        missing = [
            f"  {name}:{span['start']['row']}-{span['end']['row']}"
            for name, info in sorted(report.get("files", {}).items())
            for span in info.get("not_covered", [])
        ]
        raise click.ClickException("lines not covered by tests:\n" + "\n".join(missing))


@policy.command("explain")
@click.option("--subject", "subject_name", help="Principal name, read from the identity store.")
@click.option("--subject-json", help="The subject as JSON instead (the policy input's `subject`).")
@click.option("--database-uri", envvar="MLFLOW_SECURE_DATABASE_URI", help="Identity store URI.")
@click.option("--scope", "scopes", multiple=True, help="Credential scopes (default: all).")
@click.option("--endpoint", required=True, help="Logical endpoint, e.g. mlflow.runs.get.")
@click.option("--access", help="Access level; default: the census's for the endpoint.")
@click.option(
    "--resource",
    "resource_json",
    default='{"type": "none"}',
    show_default=True,
    help="The resource as JSON (the policy input's `resource`).",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Policy directory; default: MLFLOW_SECURE_POLICY_DIR or the bundled one.",
)
@click.option("--show-input", is_flag=True, help="Also print the input that was evaluated.")
@click.option(
    "--show-revision",
    is_flag=True,
    help="Also print the policy revision, as the server's audit events name it.",
)
def policy_explain(
    subject_name: str | None,
    subject_json: str | None,
    database_uri: str | None,
    scopes: tuple[str, ...],
    endpoint: str,
    access: str | None,
    resource_json: str,
    directory: Path | None,
    show_input: bool,
    show_revision: bool,
) -> None:
    """Show the decision and reasons for a subject, endpoint and resource."""
    from mlflow_secure.policy.client import PolicyUnavailable
    from mlflow_secure.policy.explain import ExplainError, access_for, evaluate, subject_input
    from mlflow_secure.policy.revision import directory_revision

    try:
        if subject_json:
            subject = json.loads(subject_json)
        elif subject_name and database_uri:
            subject = subject_input(database_uri, subject_name, scopes)
        else:
            raise ExplainError("give --subject with --database-uri, or --subject-json")
        policy_input = {
            "subject": subject,
            "action": {
                "endpoint": endpoint,
                "access": access or access_for(endpoint),
                "method": "GET",
            },
            "resource": json.loads(resource_json),
            "request": {"path": "", "client_ip": "", "tls": True, "time": ""},
        }
        directory = directory or policy_dir(settings())
        decision = evaluate(opa_binary(), directory, policy_input)
        revision = directory_revision(opa_binary(), directory) if show_revision else None
    except (ExplainError, PolicyUnavailable, json.JSONDecodeError) as exc:
        raise click.ClickException(str(exc)) from None
    if show_input:
        click.echo(json.dumps(policy_input, indent=2))
    click.echo("allow" if decision.get("allow") is True else "deny")
    for reason in decision.get("reasons", []):
        click.echo(f"  - {reason}")
    if revision:
        click.echo(f"policy revision: {revision}")
