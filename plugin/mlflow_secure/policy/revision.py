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
only while nothing in its directory changed since the last full read (`tree_signature`:
every directory and file, ignored ones included, with their times) **and** the modules on
disk (read locally: ~0.3 ms) are exactly the sources OPA served then. Whenever either
differs it reads in full on every refresh, so an OPA that reloads late (it reloads on any
event in the directories it watches, which after a symlink swap or a new subdirectory are not
the ones on disk) is caught at its next refresh, however late; so is a module added and moved
away between two refreshes, which OPA keeps serving (it unloads only paths named by an event:
the modules on disk then never equal the served ones again, and every refresh reads in full);
an edit OPA rejects keeps it reading in full, as before. At least every ``FULL_READ_SECONDS``
the listing is read whatever the disk says. ``data.mlflow`` is read every time. An external
OPA gives no such signal: its modules are read every time.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import stat
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow_secure.policy.client import DecisionClient, PolicyUnavailable
from mlflow_secure.policy.determinism import reuse_problem

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
# A policy tree larger or deeper than this is not compared with what OPA serves (the listing
# is read in full instead).
MAX_TREE_ENTRIES = 10_000
MAX_TREE_DEPTH = 64


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


def _modules(payload: Any) -> list[dict[str, Any]]:
    modules = payload.get("result") if isinstance(payload, dict) else None
    if not isinstance(modules, list) or not all(
        isinstance(module, dict) and isinstance(module.get("raw"), str) for module in modules
    ):
        raise PolicyUnavailable("the policy engine listed its policies in an unexpected shape")
    return modules


def _data(client: DecisionClient) -> Any:
    payload = client.read_sync(DATA_PATH, FETCH_TIMEOUT)
    if not isinstance(payload, dict):
        raise PolicyUnavailable("the policy engine answered data.mlflow in an unexpected shape")
    return payload.get("result")  # absent: data.mlflow is undefined


@dataclass(frozen=True)
class Served:
    """What OPA serves: its revision, and why its decisions may not be reused (None: they
    may; determinism.py)."""

    revision: str
    reuse_problem: str | None


def _read_all(client: DecisionClient, attempts: int = 3) -> tuple[Served, list[str]]:
    """What OPA serves now, and its module sources.

    The modules and the data are two requests: a reload between them would mix two
    revisions, so the data is read on both sides of the modules and must not have changed.
    """
    for _ in range(attempts):
        before = _data(client)
        modules = _modules(client.read_sync(POLICIES_PATH, FETCH_TIMEOUT))
        if _data(client) == before:
            sources = [module["raw"] for module in modules]
            return Served(revision_of(sources, before), reuse_problem(modules)), sources
    raise PolicyUnavailable("the policies kept changing while their revision was read")


def fetch_revision(client: DecisionClient) -> str:
    """The revision OPA is serving now; PolicyUnavailable when it cannot be told."""
    return _read_all(client)[0].revision


def _read_module(path: Path) -> str:
    """A module's source; OSError unless it is a regular file (a FIFO named `x.rego` must not
    hang the watcher)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read().decode("utf-8")
    finally:
        os.close(fd)


def _disk_sources(directory: Path) -> list[str] | None:
    """The sorted sources of the modules a managed OPA serving `directory` loads; None when
    they cannot be read (treated as a difference)."""
    try:
        return sorted(_read_module(path) for path in policy_files(directory))
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
    _signature: Any = None  # the tree as it was just before that read
    _read_at: float = field(default=float("-inf"))
    _reuse_problem: str | None = "not read yet"  # of the modules OPA served then
    full_reads: int = 0

    def _listing_needed(self, now: float, signature: Any) -> bool:
        if self.directory is None or self._served is None or signature is None:
            return True
        if now - self._read_at >= FULL_READ_SECONDS or signature != self._signature:
            return True
        return _disk_sources(self.directory) != self._served

    def read(self) -> Served:
        """What OPA serves now; PolicyUnavailable when it cannot be told."""
        now = time.monotonic()
        signature = tree_signature(self.directory) if self.directory is not None else None
        try:
            if not self._listing_needed(now, signature):
                assert self._served is not None  # the same modules: the same reuse problem
                return Served(revision_of(self._served, _data(self.client)), self._reuse_problem)
            served, sources = _read_all(self.client)
        except BaseException:
            self._served = None  # whatever OPA serves after a failure is read in full
            raise
        self._served, self._signature, self._read_at = sorted(sources), signature, now
        self._reuse_problem = served.reuse_problem
        self.full_reads += 1
        return served


def _ignored(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in IGNORED)


def _walk(directory: Path, skip_ignored: bool) -> Iterator[tuple[str, list[str]]]:
    """(directory, its file names) below `directory`, symbolic links followed, each directory
    once (a link cycle is not a loop), sorted, depth first. Iterative (Python 3.11's os.walk
    recurses); OSError past MAX_TREE_DEPTH levels or MAX_TREE_ENTRIES entries."""
    seen: set[tuple[int, int]] = set()
    entries = 0
    stack = [(str(directory), 0)]
    while stack:
        root, depth = stack.pop()
        info = os.stat(root)
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        if depth > MAX_TREE_DEPTH:
            raise OSError(f"{directory} is more than {MAX_TREE_DEPTH} directories deep")
        directories, files = [], []
        with os.scandir(root) as found:
            for entry in found:
                if skip_ignored and _ignored(entry.name):
                    continue
                (directories if entry.is_dir() else files).append(entry.name)
        entries += len(directories) + len(files) + 1
        if entries > MAX_TREE_ENTRIES:
            raise OSError(f"more than {MAX_TREE_ENTRIES} entries below {directory}")
        yield root, sorted(files)
        stack.extend((os.path.join(root, name), depth + 1) for name in sorted(directories)[::-1])


def policy_files(directory: Path) -> list[Path]:
    """The ``.rego`` files the managed OPA loads from `directory` (tests and dotfiles skipped).

    Iterative, links followed once: a deep or cyclic tree raises OSError instead of
    exhausting the stack or looping (attacker finding: 1,000 nested directories killed the
    revision watcher with a RecursionError)."""
    return [
        Path(root) / name
        for root, files in _walk(directory, skip_ignored=True)
        for name in files
        if name.endswith(".rego")
    ]


def tree_signature(directory: Path) -> tuple[tuple[str, int, int, int, int], ...] | None:
    """Every directory and file below `directory`, ignored ones included, as (path, inode,
    size, modification and change times): what OPA's watch reacts to. A file created and
    removed, or a directory moved away, between two looks changes its parent's times. None
    when the tree cannot be read (treated as a change)."""
    entries: list[tuple[str, int, int, int, int]] = []
    try:
        for root, files in _walk(directory, skip_ignored=False):
            for path in (root, *(os.path.join(root, name) for name in files)):
                info = os.stat(path)
                entries.append(
                    (path, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
                )
    except OSError:
        return None
    return tuple(entries)


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
