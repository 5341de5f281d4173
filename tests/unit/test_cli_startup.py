"""The CLI starts fast: its commands import only what they need (issue 13, item 10).

Importing MLflow, SQLAlchemy or the server app costs seconds at every start of the CLI. Rather
than timing commands (noisy on a shared machine), each check runs in a fresh interpreter and
fails if a heavy package appears in ``sys.modules``: after importing a CLI module, and after
really running `whoami`, `users list` and `keys create` against a small HTTP server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mlflow_secure.cli

CLI_DIR = Path(mlflow_secure.cli.__file__).parent
CLI_MODULES = sorted(
    "mlflow_secure.cli" if path.stem == "__init__" else f"mlflow_secure.cli.{path.stem}"
    for path in CLI_DIR.glob("*.py")
    if path.stem != "__main__"
)
CLIENT_HELPERS = [
    "mlflow_secure.admin.client",
    "mlflow_secure.client.api_keys",
    "mlflow_secure.client.bearer",
    "mlflow_secure.client.context",
    "mlflow_secure.client.credentials",
    "mlflow_secure.client.errors",
    "mlflow_secure.client.oidc",
    "mlflow_secure.client.secret_files",
    "mlflow_secure.client.urls",
]
# Never needed to start the CLI or to run an identity command.
HEAVY = ("mlflow", "sqlalchemy", "alembic", "flask", "pandas", "numpy", "mlflow_secure.app")
# The server side of the package: the identity commands only talk HTTP to it.
SERVER_SIDE = (
    "mlflow_secure.request",
    "mlflow_secure.policy",
    "mlflow_secure.audit",
    "mlflow_secure.identity",
)

REPORT = """
import json, sys
print(json.dumps(sorted(
    name for name in sys.modules
    if any(name == p or name.startswith(p + ".") for p in {prefixes!r})
)))
"""


def loaded(code: str, prefixes: tuple[str, ...], env: dict[str, str] | None = None) -> list[str]:
    """Which modules under ``prefixes`` a fresh interpreter holds after running ``code``."""
    script = textwrap.dedent(code) + REPORT.format(prefixes=prefixes)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", CLI_MODULES)
def test_importing_a_cli_module_loads_no_heavy_package(module: str) -> None:
    assert loaded(f"import {module}", HEAVY) == []


def test_client_helpers_the_cli_uses_load_no_mlflow() -> None:
    imports = "\n".join(f"import {module}" for module in CLIENT_HELPERS)
    assert loaded(imports, HEAVY) == []


def test_cli_help_loads_no_heavy_package() -> None:
    code = """
    from mlflow_secure.cli.main import main
    try:
        main(["--help"])
    except SystemExit:
        pass
    """
    assert loaded(code, HEAVY) == []


# A stand-in admin API: just enough for the three commands the issue names.
STUB_SERVER = """
import json, os, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEY = {"display": "mlsk_AbCdEf012345…", "principal": "root", "name": None, "scopes": ["read"],
       "projects": None, "expires_at": None, "key_id": "AbCdEf012345"}
ANSWERS = {
    "/api/2.0/mlflow-secure/whoami": {"subject": {"id": "root", "kind": "user",
                                                  "auth": "api_key", "roles": ["admin"]}},
    "/api/2.0/mlflow-secure/users/list": {"users": []},
    "/api/2.0/mlflow-secure/keys/create": {"key": "mlsk_" + "A" * 61, "api_key": KEY},
}

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps(ANSWERS[self.path.split("?")[0]]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
os.environ["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{server.server_port}"
os.environ["MLFLOW_SECURE_API_KEY"] = "mlsk_" + "K" * 61
"""


@pytest.mark.parametrize(
    "command",
    [
        ["whoami"],
        ["users", "list"],
        ["keys", "create", "--scope", "read"],
        ["whoami", "--json"],
    ],
)
@pytest.mark.parametrize("auth", [None, "secure"])
def test_identity_commands_run_without_mlflow_or_the_server(
    command: list[str], auth: str | None, tmp_path: Path
) -> None:
    code = (
        STUB_SERVER
        + f"""
from mlflow_secure.cli.main import main
main({command!r}, standalone_mode=False)
"""
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "NO_PROXY": "127.0.0.1",
        "no_proxy": "127.0.0.1",
    }
    if auth:
        env["MLFLOW_TRACKING_AUTH"] = auth
    assert loaded(code, HEAVY + SERVER_SIDE, env=env) == []


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlflow_secure.cli", "keys", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "generate" in result.stdout
