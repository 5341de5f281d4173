"""What the identity commands accept: value types, shared options and argument checks.

Secrets: passwords are read only from a hidden, confirmed prompt or from stdin (never from an
argument, which would land in shell history and ``ps``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, ClassVar

import click

SCOPES = ("read", "write", "admin")
GLOBAL_ROLES = ("admin", "auditor")
PROJECT_ROLES = ("viewer", "editor", "maintainer")
CLEARANCES = ("public", "internal", "confidential", "restricted")
KEY_PREFIX = "mlsk_"
KEY_ID_PATTERN = re.compile(r"[0-9A-Za-z]{12}")
FULL_KEY_BODY_LENGTH = 61  # what follows the prefix in a whole key


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


def key_id(value: str) -> str:
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


def one_principal(user: str | None, service_account: str | None) -> str | None:
    if user and service_account:
        raise click.UsageError("give --user or --service-account, not both")
    return user or service_account


def member(
    user: str | None, service_account: str | None, team: str | None
) -> tuple[str | None, str | None]:
    principal = one_principal(user, service_account)
    if (principal is None) == (team is None):
        raise click.UsageError("give exactly one of --user, --service-account or --team")
    return principal, team


def read_password(prompt: bool, stdin: bool) -> str | None:
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


def confirm(yes: bool, question: str) -> None:
    if not yes:
        click.confirm(question, abort=True)


yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")

member_options = [
    click.option("--user", help="A user member."),
    click.option("--service-account", help="A service account member."),
    click.option("--team", help="A whole team as member."),
]


def with_member(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(member_options):
        func = option(func)
    return func
