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
as much again in OPA. `RevisionReader` therefore reads the modules of a managed OPA only when
they may have changed: while the files of its directory (what ``--watch`` reloads) changed less
than ``SETTLE_SECONDS`` ago, and at least every ``FULL_READ_SECONDS`` whatever the files say.
``data.mlflow`` is read every time. An external OPA gives no such signal: its modules are read
every time.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
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
# After its files change, OPA's --watch reloads within milliseconds (a failed compile keeps the
# old modules): the modules are read on every refresh for this long after a change.
SETTLE_SECONDS = 10.0
# ... and at least this often whatever the files say (a missed change costs at most this).
FULL_READ_SECONDS = 60.0


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


def directory_signature(directory: Path) -> tuple[tuple[str, int, int, int], ...] | None:
    """Every file below `directory` as (path, inode, size, change time): what --watch sees.

    `os.stat` follows symbolic links, so swapping a mounted ConfigMap's target changes it too.
    None when the directory cannot be read (treated as a change).
    """
    entries: list[tuple[str, int, int, int]] = []
    try:
        for root, directories, files in os.walk(directory):
            directories.sort()
            for name in sorted(files):
                path = os.path.join(root, name)
                info = os.stat(path)
                entries.append((path, info.st_ino, info.st_size, info.st_ctime_ns))
    except OSError:
        return None
    return tuple(entries)


@dataclass
class RevisionReader:
    """Reads the revision, and the modules only when they may have changed (module docstring).

    `directory` is what a managed OPA serves; None for an external OPA (no signal: every read
    is a full one). One per policy engine, used from its watcher thread.
    """

    client: DecisionClient
    directory: Path | None = None
    _sources: list[str] | None = None
    _signature: Any = None
    _changed_at: float = field(default=float("-inf"))
    _read_at: float = field(default=float("-inf"))
    full_reads: int = 0

    def _modules_may_have_changed(self, now: float) -> bool:
        if self.directory is None or self._sources is None:
            return True
        signature = directory_signature(self.directory)
        if signature is None or signature != self._signature:
            self._signature, self._changed_at = signature, now
        return now - self._changed_at < SETTLE_SECONDS or now - self._read_at >= FULL_READ_SECONDS

    def read(self) -> str:
        """The revision OPA serves now; PolicyUnavailable when it cannot be told."""
        now = time.monotonic()
        try:
            if not self._modules_may_have_changed(now):
                assert self._sources is not None
                return revision_of(self._sources, _data(self.client))
            if self.directory is not None and self._sources is None:
                self._signature = directory_signature(self.directory)
            revision, self._sources = _read_all(self.client)
        except BaseException:
            self._sources = None  # whatever OPA serves after a failure is read in full
            raise
        self._read_at = now
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
