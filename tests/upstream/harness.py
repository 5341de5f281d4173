"""The real servers MLflow's own REST tests run against: stock `mlflow server` or
`mlflow server --app-name secure`, the latter used by an ordinary user who maintains a project.

MLflow's tests start a fresh in-process server on a fresh SQLite database for every test. A
real server takes 5-20 s to start on a busy machine, so the harness starts one per session (and
the few a test asks for itself) and gives every test a fresh database instead: before each test
the tracking database is restored, in place, from the copy taken right after start-up (SQLite's
backup API, which the server's open connections see on their next read). Stock and secure get
exactly the same treatment, so the comparison is fair.

Everything secure needs is created the way an operator would: the bootstrap administrator's key
is handed over in MLFLOW_SECURE_BOOTSTRAP_ADMIN_KEY, and that administrator creates the user
`upstream-maintainer`, the project `upstream` (the user's only project, role `maintainer`) and
a read/write API key through the admin HTTP API. Every secure server of a session shares one
identity store, so that one key works for all of them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support import servers

REPO = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO / ".tools" / "bin"
ADMIN_API = "/api/2.0/mlflow-secure/"
USER = "upstream-maintainer"
PROJECT = "upstream"
ROLE = "maintainer"
KEY_SCOPES = ("read", "write")
# The secure server caches an experiment's attributes for a second (request/lookups.py,
# ATTRIBUTE_TTL). Experiment ids start again at 1 after a reset, so a test waits that long
# after the previous one before it starts: no test sees an attribute cached by the last one.
SECURE_CACHE_SECONDS = 1.1
START_TIMEOUT = float(os.environ.get("MLS_UPSTREAM_START_TIMEOUT", "240"))
# No network here: MLflow's gateway would fetch its model catalogue from GitHub (and wait for
# minutes); an empty catalogue URI makes it use the catalogue bundled with MLflow.
OFFLINE_ENV = {"MLFLOW_MODEL_CATALOG_URI": ""}
KEY_PATTERN = re.compile(r"mlsk_[0-9A-Za-z]{61}")


class HarnessError(RuntimeError):
    """The harness itself could not do its job (a server did not start, set-up refused)."""


@dataclass
class Harness:
    kind: str  # "stock" or "secure"
    client: str = "token"  # "token": MLFLOW_TRACKING_TOKEN; "plugin": MLFLOW_TRACKING_AUTH=secure
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mlsup-", dir="/tmp")))
    admin_key: str | None = None
    key: str | None = None  # the maintainer's key, once the first secure server has started
    running: list[servers.Server] = field(default_factory=list)
    main: servers.Server | None = None
    main_db: Path | None = None
    pristine: Path | None = None
    last_release: float = 0.0
    _provisioned: bool = False
    _fresh: bool = False
    scratch: list[Path] = field(default_factory=list)  # short runtime dirs, removed at the end

    # -- starting servers -------------------------------------------------------------------

    @property
    def identity_uri(self) -> str:
        return f"sqlite:///{self.root / 'identity.db'}"

    def urls(self) -> list[str]:
        return [server.url for server in self.running]

    def start(
        self,
        name: str,
        *,
        backend_uri: str,
        artifacts_destination: str,
        default_artifact_root: str | None = None,
        port: int | None = None,
        extra_env: dict[str, Any] | None = None,
    ) -> servers.Server:
        """Start one server of this harness's kind and wait until /health answers 200."""
        workdir = self.root / name
        workdir.mkdir(parents=True, exist_ok=True)
        port = port or servers.free_port()
        command = [servers.MLFLOW, "server"]
        if self.kind == "secure":
            command += ["--app-name", "secure"]
        command += [
            "--backend-store-uri",
            backend_uri,
            "--artifacts-destination",
            artifacts_destination,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ]
        if default_artifact_root:
            command += ["--default-artifact-root", default_artifact_root]
        env = {
            "PATH": f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            # What MLflow's test fixtures give their in-process server.
            "MLFLOW_CRYPTO_KEK_PASSPHRASE": "test-passphrase-at-least-32-characters-long",
            "_MLFLOW_TESTING": "TRUE",
            **OFFLINE_ENV,
            **{k: str(v) for k, v in (extra_env or {}).items()},
        }
        if self.kind == "secure":
            env["MLFLOW_SECURE_DATABASE_URI"] = self.identity_uri
            env["MLFLOW_SECURE_BOOTSTRAP_ADMIN_KEY"] = self.generate_admin_key()
            opa = shutil.which("opa", path=env["PATH"])
            if opa:
                env["MLFLOW_SECURE_OPA_BINARY"] = opa
        full_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MLFLOW_SECURE_", "MLFLOW_TRACKING_")) or k in _SERVER_SECURE_VARS
        }
        full_env.update(
            {
                # Short: the managed OPA's unix socket lives there.
                "MLFLOW_SECURE_RUNTIME_DIR": self.runtime_dir(),
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                "PYTHONUNBUFFERED": "1",
                **env,
            }
        )
        server = servers.spawn(workdir, command, full_env, port, backend_uri)
        try:
            server.wait_for(
                lambda: server.get("/health").status_code == 200, START_TIMEOUT, f"{name} /health"
            )
        except BaseException as exc:
            server.kill()
            raise HarnessError(f"{self.kind} server {name!r} did not start: {exc}") from None
        self.running.append(server)
        if self.kind == "secure" and not self._provisioned:
            self.provision(server)
        return server

    def runtime_dir(self) -> str:
        directory = tempfile.mkdtemp(prefix="mls-", dir="/tmp")
        self.scratch.append(Path(directory))
        return directory

    def generate_admin_key(self) -> str:
        if self.admin_key is None:
            cli = Path(sys.executable).with_name("mlflow-secure")
            out = subprocess.run(
                [str(cli), "keys", "generate"], capture_output=True, text=True, check=True
            ).stdout
            match = KEY_PATTERN.search(out)
            if not match:
                raise HarnessError(f"`mlflow-secure keys generate` printed no key: {out!r}")
            self.admin_key = match.group(0)
        return self.admin_key

    def provision(self, server: servers.Server) -> None:
        """The ordinary user, their project and their key, made by the bootstrap admin."""

        def admin(path: str, body: dict[str, Any]) -> dict[str, Any]:
            response = server.api("POST", ADMIN_API + path, self.admin_key, json=body)
            if response.status_code != 200:
                raise HarnessError(f"admin {path} refused: {response.status_code} {response.text}")
            return response.json()

        admin("users/create", {"name": USER})
        admin("projects/create", {"name": PROJECT})
        admin("projects/set-member", {"project": PROJECT, "role": ROLE, "principal": USER})
        self.key = admin("keys/create", {"principal": USER, "scopes": list(KEY_SCOPES)})["key"]
        self._provisioned = True
        self.apply_client_env()

    def apply_client_env(self) -> None:
        """How the user's MLflow client sends their key (set again before every test)."""
        if not self.key:
            return
        if self.client == "plugin":
            os.environ["MLFLOW_TRACKING_AUTH"] = "secure"
            os.environ["MLFLOW_SECURE_API_KEY"] = self.key
        else:
            os.environ["MLFLOW_TRACKING_TOKEN"] = self.key

    # -- the session's main server and its per-test reset -----------------------------------

    def main_server(self) -> servers.Server:
        if self.main is None:
            workdir = self.root / "main"
            workdir.mkdir(parents=True, exist_ok=True)
            (workdir / "artifacts").mkdir(exist_ok=True)
            self.main_db = workdir / "mlflow.db"
            self.main = self.start(
                "main",
                backend_uri=f"sqlite:///{self.main_db}",
                artifacts_destination=str(workdir / "artifacts"),
            )
            self.pristine = workdir / "pristine.db"
            _copy_database(self.main_db, self.pristine)
        return self.main

    def fresh_main(self) -> str:
        """The main server's tracking database as a new server's would be: restored once per
        test (the first of `db_uri` and `ServerThread` to ask does it); its URI."""
        self.main_server()
        assert self.pristine is not None
        assert self.main_db is not None
        if not self._fresh:
            _copy_database(self.pristine, self.main_db)
            self._fresh = True
        return f"sqlite:///{self.main_db}"

    def main_url(self) -> str:
        """The main server's URL for this test, once its database is fresh."""
        self.fresh_main()
        if self.kind == "secure":
            wait = SECURE_CACHE_SECONDS - (time.monotonic() - self.last_release)
            if wait > 0:
                time.sleep(wait)
        assert self.main is not None
        return self.main.url

    def release(self) -> None:
        """The test is over: the next one gets a fresh database."""
        self._fresh = False
        self.last_release = time.monotonic()

    # -- the end --------------------------------------------------------------------------

    def audit_events(self) -> list[dict[str, Any]]:
        """Every audit event of the maintainer and every unauthenticated one (secure only)."""
        if self.kind != "secure" or not self.running or not self.admin_key:
            return []
        server = self.running[0]
        time.sleep(2)  # the audit trail is written behind the answers: let the last ones land
        events: list[dict[str, Any]] = []
        for query in ({"subject": USER}, {"decision": "unauthenticated"}):
            token = None
            while True:
                params = {**query, "max_results": 1000}
                if token:
                    params["page_token"] = token
                response = httpx.get(
                    server.url + ADMIN_API + "audit/events",
                    params=params,
                    headers={"Authorization": f"Bearer {self.admin_key}"},
                    timeout=120,
                )
                if response.status_code != 200:
                    break
                page = response.json()
                events += page.get("events", [])
                token = page.get("next_page_token")
                if not token:
                    break
        return events

    def stop(self, server: servers.Server) -> None:
        with contextlib.suppress(Exception):
            server.interrupt(timeout=30)
        with contextlib.suppress(Exception):
            server.kill()
        with contextlib.suppress(ValueError):
            self.running.remove(server)

    def stop_all(self) -> None:
        for server in list(self.running):
            self.stop(server)

    def remove_files(self) -> None:
        """Databases, artefacts and logs of the session (run.py copies the logs first)."""
        for directory in [self.root, *self.scratch]:
            shutil.rmtree(directory, ignore_errors=True)

    def logs(self) -> list[Path]:
        return sorted(self.root.glob("*/server-*.log"))


# Settings the developer's shell may hold that a server should keep (the OPA location).
_SERVER_SECURE_VARS = {"MLFLOW_SECURE_OPA_BINARY", "MLFLOW_SECURE_TOOLS_DIR"}


def _copy_database(source: Path, target: Path) -> None:
    """Replace `target`'s content with `source`'s through SQLite, safe while a server has
    `target` open (its connections re-read the file on their next transaction)."""
    src = sqlite3.connect(source, timeout=60)
    dst = sqlite3.connect(target, timeout=60)
    try:
        src.backup(dst, sleep=0.05)
    finally:
        dst.close()
        src.close()
