"""Whether OPA would give the same answer again: the condition for reusing a decision.

The decision cache (decision_cache.py) answers a request from an earlier decision only when
the policy is a function of what the cache key holds: the input (the request time aside) and
the policy revision (every loaded module and the document ``data.mlflow``, revision.py).
A rule breaks that when it reads anything else, and this module finds such rules in the
syntax trees OPA lists for its loaded modules (``GET /v1/policies``, after compilation:
imports and rule references are already resolved to full refs):

* **the request time**: ``input.request.time``, or a part of the input chosen while
  evaluating (``input[x]``, ``input.request[x]``), or the input or its request as a whole
  (``x := input``, ``walk(input)``, ``object.get(input.request, ...)``);
* **a nondeterministic built-in**: those OPA's capabilities mark as such (``time.now_ns``,
  ``http.send``, ``rand.intn``, ...; `NONDETERMINISTIC_BUILTINS` is checked against the
  pinned OPA by a test), plus certificate verification, which reads the clock;
* **data the revision does not cover**: a ref under ``data`` outside ``data.mlflow`` that is
  not a rule of a loaded package (base documents pushed to OPA or loaded from another path,
  beside a package of the same name too), or a part of ``data`` chosen while evaluating.

It errs one way only: a rule it cannot prove harmless turns reuse off (with a reason naming
the module), never on. The walk costs a few milliseconds per module; results are kept per
module source text, so the revision watcher's periodic full reads repeat none of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# `opa capabilities --current` of the pinned OPA, builtins with "nondeterministic": true
# (tests/unit/test_policy_determinism.py compares), and the x509 verifiers, which check the
# certificates' validity against the clock.
NONDETERMINISTIC_BUILTINS = frozenset(
    {
        "http.send",
        "io.jwt.decode_verify",
        "io.jwt.encode_sign",
        "io.jwt.encode_sign_raw",
        "json.match_schema",
        "json.verify_schema",
        "net.lookup_ip_addr",
        "opa.runtime",
        "rand.intn",
        "time.now_ns",
        "uuid.rfc4122",
    }
)
CLOCK_READING_BUILTINS = frozenset(
    {
        "crypto.x509.parse_and_verify_certificates",
        "crypto.x509.parse_and_verify_certificates_with_options",
    }
)
UNREPEATABLE_BUILTINS = NONDETERMINISTIC_BUILTINS | CLOCK_READING_BUILTINS
COVERED_DATA_ROOT = "mlflow"  # revision.DATA_PATH: data.mlflow is part of the revision
MAX_REMEMBERED_MODULES = 4096


@dataclass(frozen=True)
class ModuleFindings:
    """What one module reads that the cache key may not hold."""

    problems: tuple[str, ...]  # "reads input.request.time", "calls http.send", ...
    data_paths: frozenset[tuple[str, ...]]  # constant paths below data.* outside data.mlflow


_remembered: dict[str, ModuleFindings] = {}


def _refs(node: Any) -> Iterator[list[Any]]:
    """Every ref term below `node` (a ref's own parts included: `data.x[input.y]`)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("type") == "ref" and isinstance(item.get("value"), list):
                yield item["value"]
            stack.extend(value for key, value in item.items() if key != "location")
        elif isinstance(item, list):
            stack.extend(item)


def _constant_path(parts: list[Any]) -> tuple[str, ...]:
    """The leading string keys of a ref after its head (`input.request.time` → request, time)."""
    path: list[str] = []
    for part in parts[1:]:
        if not (isinstance(part, dict) and part.get("type") == "string"):
            break
        path.append(str(part.get("value")))
    return tuple(path)


def _head(parts: list[Any]) -> str | None:
    first = parts[0] if parts else None
    if isinstance(first, dict) and first.get("type") == "var":
        return str(first.get("value"))
    return None


def _input_problem(parts: list[Any], path: tuple[str, ...]) -> str | None:
    whole = len(path) == len(parts) - 1  # nothing after the constant keys
    if not path:
        return "reads the input as a whole" if whole else "reads a part of the input it chooses"
    if path[0] != "request":
        return None
    if len(path) == 1:
        if whole:
            return "reads input.request as a whole"
        return "reads a part of input.request it chooses"
    return "reads input.request.time" if path[1] == "time" else None


def module_findings(ast: dict[str, Any]) -> ModuleFindings:
    """The findings of one module's syntax tree (OPA's JSON form)."""
    problems: list[str] = []
    data_paths: set[tuple[str, ...]] = set()
    for parts in _refs({key: value for key, value in ast.items() if key != "package"}):
        head = _head(parts)
        path = _constant_path(parts)
        if head == "input":
            problem = _input_problem(parts, path)
            if problem:
                problems.append(problem)
        elif head == "data":
            if not path:
                problems.append("reads a part of data it chooses, or data as a whole")
            elif path[0] != COVERED_DATA_ROOT:
                data_paths.add(path)
        elif head is not None:
            name = ".".join((head, *path))
            for builtin in UNREPEATABLE_BUILTINS:
                if name == builtin or name.startswith(builtin + "."):
                    problems.append(f"calls {builtin}")
    return ModuleFindings(tuple(sorted(set(problems))), frozenset(data_paths))


def _findings_of(module: dict[str, Any]) -> ModuleFindings:
    raw = module.get("raw")
    ast = module.get("ast")
    if not isinstance(ast, dict):
        return ModuleFindings(("was listed without its syntax tree",), frozenset())
    key = hashlib.sha256(raw.encode("utf-8")).hexdigest() if isinstance(raw, str) else None
    if key is not None and key in _remembered:
        return _remembered[key]
    found = module_findings(ast)
    if key is not None:
        if len(_remembered) >= MAX_REMEMBERED_MODULES:
            _remembered.clear()
        _remembered[key] = found
    return found


def _package(module: dict[str, Any]) -> tuple[str, ...] | None:
    ast = module.get("ast")
    path = ast.get("package", {}).get("path") if isinstance(ast, dict) else None
    if not isinstance(path, list) or not path:
        return None
    keys = _constant_path(path)
    return keys if len(keys) == len(path) - 1 else None


def _rule_names(module: dict[str, Any]) -> set[str]:
    """The names of the rules a module defines (the first key of each head's ref)."""
    names = set()
    for rule in module.get("ast", {}).get("rules") or []:
        head = rule.get("head", {}) if isinstance(rule, dict) else {}
        ref = head.get("ref")
        if isinstance(ref, list) and ref and isinstance(ref[0], dict):
            names.add(str(ref[0].get("value")))
        elif isinstance(head.get("name"), str):
            names.add(head["name"])
    return names


def _is_a_rule(path: tuple[str, ...], rules: dict[tuple[str, ...], set[str]]) -> bool:
    """Whether `path` (below data) reads a rule of a loaded package: a module, part of the
    revision. Anything else there is base data (a data.json beside the package, documents
    pushed to OPA), which the revision does not cover (attacker finding: a package of the
    same name let such data pass)."""
    return any(
        len(path) > len(package) and path[: len(package)] == package and path[len(package)] in names
        for package, names in rules.items()
    )


def reuse_problem(modules: list[dict[str, Any]]) -> str | None:
    """None when every decision of these modules (OPA's /v1/policies entries: id, raw, ast)
    depends only on the input minus the request time, the modules and data.mlflow; else the
    first reason why not, naming its module."""
    rules: dict[tuple[str, ...], set[str]] = {}
    for module in modules:
        package = _package(module)
        if package is not None and isinstance(module.get("ast"), dict):
            rules.setdefault(package, set()).update(_rule_names(module))
    for module in sorted(modules, key=lambda m: str(m.get("id"))):
        name = str(module.get("id", "a module"))
        found = _findings_of(module)
        if found.problems:
            return f"{name} {found.problems[0]}"
        for path in sorted(found.data_paths):
            if not _is_a_rule(path, rules):
                dotted = ".".join(path)
                return f"{name} reads data.{dotted}, which the policy revision does not cover"
    return None
