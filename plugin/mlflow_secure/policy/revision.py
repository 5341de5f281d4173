"""The policy revision: a name for the exact policies and data that made a decision.

OPA serving a directory (the managed OPA, ``--watch``) has no revision of its own; only
bundles carry one. So the revision is derived from what OPA has *actually loaded*, not from
the files on disk (an edit that does not compile is rejected by OPA, and the old policies keep
deciding): the SHA-256 of

* the sorted SHA-256 digests of the source text of every loaded module (``GET /v1/policies``;
  by content, not by module id, because the id is the file's path and the same policies in
  another directory, or on another replica, are the same revision), and
* the document ``data.mlflow`` as OPA evaluates it without input (``GET /v1/data/mlflow``):
  the bundled defaults, operator overrides, and whatever the rules derive from them.

Written ``sha256:<first 16 hex digits>``. Every worker, and every replica serving the same
policies, computes the same value. Fetching ``/v1/policies`` costs about 15 ms (OPA sends each
module's syntax tree too), far too much per request: the policy engine refreshes it in the
background instead (see ``PolicyEngine.watch_revision``).

Even in the background, that read every two seconds in every worker was 3% of a loaded
worker's time (275 kB of JSON per read, measured with py-spy under the mixed benchmark), and
as much again in OPA. `RevisionReader` therefore skips the module listing of a managed OPA
while the modules on disk (``policy_files``, read locally: ~0.3 ms) are exactly the sources
OPA served at the last full read. Whenever they differ it reads in full on every refresh, so
an OPA that reloads late (it reloads on any event in the directories it watches, which after
a symlink swap or a new subdirectory are not the ones on disk) is caught at its next refresh,
however late; an edit OPA rejects keeps it reading in full, as before. OPA serves what it read
from disk, so while disk and served agree no reload can change what it serves. At least every
``FULL_READ_SECONDS`` the listing is read whatever the disk says. ``data.mlflow`` is read
every time. An external OPA gives no such signal: its modules are read every time.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow_secure.policy.client import DecisionClient, PolicyUnavailable

POLICIES_PATH = "/v1/policies"
DATA_PATH = "/v1/data/mlflow"
DATA_QUERY = "data.mlflow"
PREFIX = "sha256:"
# A background fetch may take longer than a decision; it never holds up a request.
FETCH_TIMEOUT = 5.0
# The managed OPA loads a directory with these --ignore patterns (managed_opa.opa_command).
IGNORED = ("*_test.rego", ".*")
# The module listing is read at least this often, whatever the files on disk say.
FULL_READ_SECONDS = 30.0


def revision_of(module_sources: Iterable[str], data: Any) -> str:
    """The revision of a set of module source texts and the evaluated ``data.mlflow``."""
    digests = sorted(
        hashlib.sha256(source.encode("utf-8")).hexdigest() for source in module_sources
    )
    material = json.dumps(
        {"modules": digests, "data": data},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return PREFIX + hashlib.sha256(material.encode("utf-8")).hexdigest()[:16]


def _module_sources(payload: Any) -> list[str]:
    modules = payload.get("result") if isinstance(payload, dict) else None
    if not isinstance(modules, list) or not all(
        isinstance(module, dict) and isinstance(module.get("raw"), str) for module in modules
    ):
        raise PolicyUnavailable("the policy engine listed its policies in an unexpected shape")
    return [module["raw"] for module in modules]


def _data(client: DecisionClient) -> Any:
    payload = client.read_sync(DATA_PATH, FETCH_TIMEOUT)
    if not isinstance(payload, dict):
        raise PolicyUnavailable("the policy engine answered data.mlflow in an unexpected shape")
    return payload.get("result")  # absent: data.mlflow is undefined


def _read_all(client: DecisionClient, attempts: int = 3) -> tuple[str, list[str]]:
    """The revision and the module sources OPA serves now.

    The modules and the data are two requests: a reload between them would mix two
    revisions, so the data is read on both sides of the modules and must not have changed.
    """
    for _ in range(attempts):
        before = _data(client)
        sources = _module_sources(client.read_sync(POLICIES_PATH, FETCH_TIMEOUT))
        if _data(client) == before:
            return revision_of(sources, before), sources
    raise PolicyUnavailable("the policies kept changing while their revision was read")


def fetch_revision(client: DecisionClient) -> str:
    """The revision OPA is serving now; PolicyUnavailable when it cannot be told."""
    return _read_all(client)[0]


def _disk_sources(directory: Path) -> list[str] | None:
    """The sorted sources of the modules a managed OPA serving `directory` loads; None when
    they cannot be read (treated as a difference)."""
    try:
        return sorted(path.read_bytes().decode("utf-8") for path in policy_files(directory))
    except (OSError, UnicodeDecodeError):
        return None


@dataclass
class RevisionReader:
    """Reads the revision, and the module listing only when it may differ (module docstring).

    `directory` is what a managed OPA serves; None for an external OPA (no signal: every read
    is a full one). One per policy engine, used from its watcher thread.
    """

    client: DecisionClient
    directory: Path | None = None
    _served: list[str] | None = None  # sorted sources OPA served at the last full read
    _read_at: float = field(default=float("-inf"))
    full_reads: int = 0

    def _listing_needed(self, now: float) -> bool:
        if self.directory is None or self._served is None:
            return True
        if now - self._read_at >= FULL_READ_SECONDS:
            return True
        return _disk_sources(self.directory) != self._served

    def read(self) -> str:
        """The revision OPA serves now; PolicyUnavailable when it cannot be told."""
        now = time.monotonic()
        try:
            if not self._listing_needed(now):
                assert self._served is not None
                return revision_of(self._served, _data(self.client))
            revision, sources = _read_all(self.client)
        except BaseException:
            self._served = None  # whatever OPA serves after a failure is read in full
            raise
        self._served, self._read_at = sorted(sources), now
        self.full_reads += 1
        return revision


def _ignored(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in IGNORED)


def policy_files(directory: Path) -> list[Path]:
    """The ``.rego`` files the managed OPA loads from `directory` (tests and dotfiles skipped)."""
    found: list[Path] = []
    for path in sorted(directory.iterdir()):
        if _ignored(path.name):
            continue
        if path.is_dir():
            found.extend(policy_files(path))
        elif path.suffix == ".rego":
            found.append(path)
    return found


def directory_revision(opa_binary: Path, directory: Path) -> str:
    """The revision a managed OPA serving `directory` reports, computed without a server.

    For ``mlflow-secure policy explain``: the data part is evaluated with ``opa eval``.
    """
    sources = [path.read_bytes().decode("utf-8") for path in policy_files(directory)]
    command = [str(opa_binary), "eval", "--format", "json"]
    for pattern in IGNORED:
        command += ["--ignore", pattern]
    command += ["--data", str(directory), DATA_QUERY]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise PolicyUnavailable(f"opa eval failed:\n{(result.stderr or result.stdout).strip()}")
    outcome = json.loads(result.stdout).get("result") or []
    data = outcome[0]["expressions"][0]["value"] if outcome else None
    return revision_of(sources, data)
