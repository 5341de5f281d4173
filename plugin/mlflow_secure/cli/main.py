"""`mlflow-secure`: the operator's and policy author's command line (one group per capability)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import click

from mlflow_secure.config import ConfigError, load_settings, policy_dir
from mlflow_secure.policy.client import DecisionClient, PolicyUnavailable, parse_opa_url
from mlflow_secure.policy.engine import PROBE_INPUT
from mlflow_secure.policy.revision import directory_revision, fetch_revision
from mlflow_secure.policy.toolchain import (
    OPA_PINNED_VERSION,
    OpaToolchainError,
    find_opa,
    install_opa,
    opa_version,
)


def _settings():
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _opa() -> Path:
    try:
        return find_opa(_settings())
    except OpaToolchainError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.version_option(package_name="mlflow-secure")
def main() -> None:
    """Security layer for MLflow tracking servers."""


@main.group()
def opa() -> None:
    """The OPA executable the managed policy engine runs."""


@opa.command("install")
@click.option("--version", "version", default=OPA_PINNED_VERSION, show_default=True)
@click.option(
    "--link-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also place an `opa` symlink here (for example .tools/bin).",
)
def opa_install(version: str, link_dir: Path | None) -> None:
    """Build OPA from its Go module into the tools cache (reused when already built)."""
    try:
        path = install_opa(_settings(), version.lstrip("v"), link_dir)
    except OpaToolchainError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"OPA {opa_version(path)} at {path}")


@opa.command("which")
def opa_which() -> None:
    """Show which OPA the server would run, and its version."""
    path = _opa()
    click.echo(f"{path} (OPA {opa_version(path)})")


@opa.command("status")
@click.option("--url", help="OPA to probe; defaults to MLFLOW_SECURE_OPA_URL.")
def opa_status(url: str | None) -> None:
    """Check that an external OPA answers a well-formed decision with our policies."""
    settings = _settings()
    target = url or settings.opa_url
    if not target:
        raise click.ClickException(
            "no external OPA configured (MLFLOW_SECURE_OPA_URL is unset): the server manages "
            "its own; `curl /health` on the server reports its readiness"
        )
    try:
        endpoint = parse_opa_url(target)
        client = DecisionClient(endpoint, settings.opa_timeout)
        decision = client.decide_sync(PROBE_INPUT)
    except (ConfigError, PolicyUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"OPA at {target} answers: probe decision allow={decision.allow}")
    try:
        click.echo(f"  policy revision: {fetch_revision(client)}")
    except PolicyUnavailable as exc:  # the decision already answered; this is informational
        click.echo(f"  policy revision: unknown ({exc})")
    if endpoint.uds is None:
        for module in _loaded_policy_modules(target):
            click.echo(f"  policy module: {module}")


def _loaded_policy_modules(url: str) -> list[str]:
    """Which policy modules a (TCP) OPA serves, via the OPA REST client library."""
    from opa_client.opa import OpaClient

    parts = urlsplit(url)
    https = parts.scheme == "https"
    client = OpaClient(host=parts.hostname, port=parts.port or (443 if https else 80), ssl=https)
    try:
        return sorted(client.get_policies_list())
    except Exception as exc:  # the decision already answered; this listing is informational
        return [f"(cannot list policies: {type(exc).__name__})"]
    finally:
        client.close_connection()


@main.group()
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
    binary = str(_opa())
    target = str(directory or policy_dir(_settings()))
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
    from mlflow_secure.policy.explain import ExplainError, access_for, evaluate, subject_input

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
        directory = directory or policy_dir(_settings())
        decision = evaluate(_opa(), directory, policy_input)
        revision = directory_revision(_opa(), directory) if show_revision else None
    except (ExplainError, PolicyUnavailable, json.JSONDecodeError) as exc:
        raise click.ClickException(str(exc)) from None
    if show_input:
        click.echo(json.dumps(policy_input, indent=2))
    click.echo("allow" if decision.get("allow") is True else "deny")
    for reason in decision.get("reasons", []):
        click.echo(f"  - {reason}")
    if revision:
        click.echo(f"policy revision: {revision}")


def _register_identity_commands() -> None:
    from mlflow_secure.cli import audit as audit_cli
    from mlflow_secure.cli import identity as cli_identity
    from mlflow_secure.identity import api_keys

    cli_identity.register(main)
    audit_cli.register(main)

    @main.commands["keys"].command("generate")
    def keys_generate() -> None:
        """Print a new random API key without contacting a server.

        For MLFLOW_SECURE_BOOTSTRAP_ADMIN_KEY: generate it into your secret manager, and the
        server registers it for the first administrator on its first start.
        """
        click.echo(api_keys.generate()[0])


_register_identity_commands()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
