"""`mlflow-secure keys|users|service-accounts|teams|projects|roles|whoami`: identity admin.

Thin commands over `SecureAdminClient`: the server (and its policy) decides everything, the
CLI only shapes arguments and output. Readable tables by default, ``--json`` for scripts.

Secrets: passwords are read only from a hidden, confirmed prompt or from stdin (never from an
argument, which would land in shell history and ``ps``); an API key is printed exactly once,
by the command that created it.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import click
from mlflow.exceptions import MlflowException, RestException

from mlflow_secure.admin.client import SecureAdminClient

SCOPES = ("read", "write", "admin")
GLOBAL_ROLES = ("admin", "auditor")
PROJECT_ROLES = ("viewer", "editor", "maintainer")
CLEARANCES = ("public", "internal", "confidential", "restricted")
KEY_PREFIX = "mlsk_"
KEY_ID_PATTERN = re.compile(r"[0-9A-Za-z]{12}")
FULL_KEY_BODY_LENGTH = 61  # what follows the prefix in a whole key
CLI_MAX_RETRIES = 2  # fail fast at a terminal; MLFLOW_HTTP_REQUEST_MAX_RETRIES overrides
STORE_IT_NOW = "Store this key now: it is shown only once and cannot be recovered."


# ---------------------------------------------------------------- parameters


class Duration(click.ParamType):
    """`90m`, `12h`, `30d`, `52w` (and `s`) as a whole number of seconds."""

    name = "duration"
    _UNITS: ClassVar[dict[str, int]] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

    def __init__(self, allow_zero: bool = False) -> None:
        self.allow_zero = allow_zero

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"(\d{1,9})([smhdw])", str(value).strip())
        if match is None and self.allow_zero and str(value).strip() == "0":
            return 0
        if match is None:
            self.fail("expected a number and a unit, like 90m, 12h, 30d or 52w", param, ctx)
        seconds = int(match.group(1)) * self._UNITS[match.group(2)]
        if seconds == 0 and not self.allow_zero:
            self.fail("must be longer than zero", param, ctx)
        return seconds


def _key_id(value: str) -> str:
    """A key id from what an operator has at hand: the id, its listing form (`mlsk_<id>…`),
    or even the whole (leaked) key, of which only the id is ever sent."""
    candidate = value.strip().rstrip("…").rstrip(".")
    candidate = candidate.removeprefix(KEY_PREFIX)
    if len(candidate) == FULL_KEY_BODY_LENGTH:
        candidate = candidate[:12]
    if not KEY_ID_PATTERN.fullmatch(candidate):
        # Not echoed: the argument may be a mangled key.
        raise click.BadParameter("expected a key id, like mlsk_AbCdEf012345… from `keys list`")
    return candidate


def _one_principal(user: str | None, service_account: str | None) -> str | None:
    if user and service_account:
        raise click.UsageError("give --user or --service-account, not both")
    return user or service_account


def _member(
    user: str | None, service_account: str | None, team: str | None
) -> tuple[str | None, str | None]:
    principal = _one_principal(user, service_account)
    if (principal is None) == (team is None):
        raise click.UsageError("give exactly one of --user, --service-account or --team")
    return principal, team


def _read_password(prompt: bool, stdin: bool) -> str | None:
    if prompt and stdin:
        raise click.UsageError("give --password-prompt or --password-stdin, not both")
    if prompt:
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if stdin:
        password = click.get_text_stream("stdin").readline().rstrip("\r\n")
        if not password:
            raise click.UsageError("--password-stdin read an empty password")
        return password
    return None


def password_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--password-stdin",
        is_flag=True,
        help="Read the password from the first line of standard input.",
    )(func)
    return click.option(
        "--password-prompt",
        is_flag=True,
        help="Prompt for the password (hidden, asked twice).",
    )(func)


# ---------------------------------------------------------------- connection and output


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


def _error_message(exc: MlflowException) -> str:
    """The server's own words, plus a denial's reasons and decision id to quote to an admin."""
    if not isinstance(exc, RestException):
        return exc.message
    body = exc.json
    lines = [str(body.get("message") or exc.message)]
    reasons = body.get("reasons")
    if isinstance(reasons, list):
        lines += [f"  reason: {reason}" for reason in reasons]
    if body.get("decision_id"):
        lines.append(f"  decision id: {body['decision_id']}")
    return "\n".join(lines)


def _client(tracking_uri: str) -> SecureAdminClient:
    retries = None if os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES") else CLI_MAX_RETRIES
    return SecureAdminClient(tracking_uri, max_retries=retries)


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
            func(Out(_client(tracking_uri), as_json), **kwargs)
        except MlflowException as exc:
            raise click.ClickException(_error_message(exc)) from None

    return wrapper


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    cells = [[_cell(value) for value in row] for row in rows]
    if not cells:
        click.echo("(none)")
        return
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        click.echo(
            "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        )


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value) or "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _when(iso: str | None) -> str:
    """A server timestamp, shortened for a table (still UTC)."""
    return "-" if iso is None else iso.replace("T", " ")[:16] + "Z"


def _parse_iso(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _key_status(key: dict[str, Any], now: datetime) -> str:
    if key.get("revoked_at"):
        return "revoked"
    expires = key.get("expires_at")
    if expires and _parse_iso(expires) <= now:
        return "expired"
    if key.get("replaced_by"):
        return f"rotated (until {_when(expires)})"
    return "active"


def _details(pairs: Iterable[tuple[str, object]]) -> None:
    pairs = list(pairs)
    width = max(len(label) for label, _ in pairs)
    for label, value in pairs:
        click.echo(f"  {label + ':':<{width + 1}} {_cell(value)}")


# ---------------------------------------------------------------- whoami


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
            ("clearance", subject.get("clearance")),
            ("scopes", subject.get("scopes")),
        ]
        if subject.get("key_id"):
            pairs.append(("key", f"{KEY_PREFIX}{subject['key_id']}…"))
            pairs.append(("key projects", subject.get("key_projects") or "not limited"))
        _details(pairs)

    out.show(payload, human)


# ---------------------------------------------------------------- keys


@click.group("keys")
def keys() -> None:
    """API keys: create, list, revoke and rotate."""


def _print_new_key(payload: dict[str, Any], verb: str) -> None:
    record = payload["api_key"]
    click.echo(f"{verb} API key {record['display']} for {record['principal']}")
    _details(
        [
            ("name", record["name"]),
            ("scopes", record["scopes"]),
            ("projects", record["projects"] or "all the principal's projects"),
            ("expires", record["expires_at"] or "never"),
        ]
    )
    click.echo("")
    click.echo(payload["key"])
    click.echo("")
    click.echo(STORE_IT_NOW)


@keys.command("create")
@click.option("--user", help="Create the key for this user (default: you).")
@click.option("--service-account", help="Create the key for this service account.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(SCOPES),
    help="What the key may do (repeatable).",
)
@click.option(
    "--project", "projects", multiple=True, help="Limit the key to a project (repeatable)."
)
@click.option("--expires", type=Duration(), help="Lifetime, like 90m, 12h, 30d or 52w.")
@click.option("--name", help="A label to recognise the key by in listings.")
@with_client
def keys_create(
    out: Out,
    user: str | None,
    service_account: str | None,
    scopes: tuple[str, ...],
    projects: tuple[str, ...],
    expires: int | None,
    name: str | None,
) -> None:
    """Create an API key; it is printed once, here, and never again."""
    payload = out.client.create_key(
        list(scopes),
        principal=_one_principal(user, service_account),
        name=name,
        projects=list(projects) or None,
        expires_in_seconds=expires,
    )
    out.show(payload, lambda: _print_new_key(payload, "Created"))


@keys.command("list")
@click.option("--user", help="List this user's keys (default: yours).")
@click.option("--service-account", help="List this service account's keys.")
@click.option("--all", "all_keys", is_flag=True, help="List every key.")
@with_client
def keys_list(out: Out, user: str | None, service_account: str | None, all_keys: bool) -> None:
    """List API keys (never their secrets)."""
    principal = _one_principal(user, service_account)
    if principal and all_keys:
        raise click.UsageError("give --all or a principal, not both")
    payload = out.client.list_keys(principal, all_keys=all_keys)
    now = datetime.now(UTC)
    rows = [
        (
            key["display"],
            key["principal"],
            key["name"],
            key["scopes"],
            key["projects"] or "all",
            _when(key["created_at"]),
            _when(key["expires_at"]),
            _when(key["last_used_at"]),
            _key_status(key, now),
        )
        for key in payload["api_keys"]
    ]
    headers = ("KEY", "PRINCIPAL", "NAME", "SCOPES", "PROJECTS", "CREATED", "EXPIRES")
    out.show(payload, lambda: _table((*headers, "LAST USED", "STATUS"), rows))


@keys.command("revoke")
@click.argument("key_id")
@with_client
def keys_revoke(out: Out, key_id: str) -> None:
    """Revoke an API key now (KEY_ID as shown by `keys list`)."""
    payload = out.client.revoke_key(_key_id(key_id))
    record = payload["api_key"]
    out.show(payload, lambda: click.echo(f"Revoked API key {record['display']}"))


@keys.command("rotate")
@click.argument("key_id")
@click.option(
    "--grace",
    type=Duration(allow_zero=True),
    default="1h",
    show_default=True,
    help="How long the old key keeps working (0 ends it now).",
)
@with_client
def keys_rotate(out: Out, key_id: str, grace: int) -> None:
    """Replace an API key with a new one (same owner, scopes and projects)."""
    old = _key_id(key_id)
    payload = out.client.rotate_key(old, grace_seconds=grace)

    def human() -> None:
        _print_new_key(payload, "Rotated to")
        if grace:
            until = (datetime.now(UTC) + timedelta(seconds=grace)).isoformat(timespec="seconds")
            click.echo(f"The old key {KEY_PREFIX}{old}… keeps working until about {until}.")
        else:
            click.echo(f"The old key {KEY_PREFIX}{old}… no longer works.")

    out.show(payload, human)


# ---------------------------------------------------------------- users


def _principal_rows(principals: list[dict[str, Any]]) -> None:
    _table(
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
    pairs += [("created", principal["created_at"]), ("updated", principal["updated_at"])]
    _details(pairs)


def _confirm(yes: bool, question: str) -> None:
    if not yes:
        click.confirm(question, abort=True)


yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


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
        password=_read_password(password_prompt, password_stdin),
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
) -> None:
    """Change a principal's details, password, clearance or whether it is disabled."""
    payload = out.client.update_user(
        name,
        display_name=display_name,
        email=email,
        password=_read_password(password_prompt, password_stdin),
        clearance=clearance,
        disabled=disabled,
    )
    out.show(payload, lambda: click.echo(f"Updated {payload['user']['name']}"))


@users.command("delete")
@click.argument("name")
@yes_option
@with_client
def users_delete(out: Out, name: str, yes: bool) -> None:
    """Delete a user and their API keys."""
    _confirm(yes, f"Delete user {name!r} and all their API keys?")
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
    _confirm(yes, f"Delete service account {name!r} and all its API keys?")
    payload = out.client.delete_service_account(name)
    out.show(payload, lambda: click.echo(f"Deleted service account {name}"))


# ---------------------------------------------------------------- roles


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


# ---------------------------------------------------------------- teams


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
    out.show(payload, lambda: _table(("TEAM", "MEMBERS", "DESCRIPTION"), rows))


@teams.command("delete")
@click.argument("name")
@yes_option
@with_client
def teams_delete(out: Out, name: str, yes: bool) -> None:
    """Delete a team (its members lose the project roles it gave them)."""
    _confirm(yes, f"Delete team {name!r}?")
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


# ---------------------------------------------------------------- projects


@click.group("projects")
def projects() -> None:
    """Projects (experiments tagged mlflow.secure.project) and who holds which role in them."""


member_options = [
    click.option("--user", help="A user member."),
    click.option("--service-account", help="A service account member."),
    click.option("--team", help="A whole team as member."),
]


def with_member(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(member_options):
        func = option(func)
    return func


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
    out.show(payload, lambda: _table(("PROJECT", "MEMBERS", "DESCRIPTION"), rows))


@projects.command("delete")
@click.argument("name")
@yes_option
@with_client
def projects_delete(out: Out, name: str, yes: bool) -> None:
    """Delete a project and its memberships."""
    _confirm(yes, f"Delete project {name!r}?")
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
    principal, team = _member(user, service_account, team)
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
    principal, team = _member(user, service_account, team)
    payload = out.client.remove_project_member(project, principal=principal, team=team)
    who = principal or f"team {team}"
    out.show(payload, lambda: click.echo(f"Removed {who} from project {project}"))


# ---------------------------------------------------------------- wiring


def register(main: click.Group) -> None:
    """Attach the identity commands to the `mlflow-secure` group."""
    for command in (keys, users, service_accounts, teams, projects, roles, whoami):
        main.add_command(command)
