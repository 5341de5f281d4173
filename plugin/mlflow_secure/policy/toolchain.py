"""Finding, checking and building the OPA executable.

We never download release binaries: OPA is built from its Go module at a pinned version with
``go install`` into a cache outside any checkout, keyed by version, so every clone and CI run
on a machine shares one build. An ``opa`` the operator provides is accepted when it is at
least ``OPA_MIN_VERSION``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from mlflow_secure.config import Settings, tools_root

OPA_MODULE = "github.com/open-policy-agent/opa"
OPA_PINNED_VERSION = "1.22.3"
# Rego v1 syntax by default, `--unix-socket-perm`, `--ignore`, `opa test --threshold`.
OPA_MIN_VERSION = "1.0.0"

INSTALL_HINT = (
    "run `mlflow-secure opa install` (builds OPA v{pinned} from source with Go; `make setup` "
    "does it for a checkout) or set MLFLOW_SECURE_OPA_BINARY to an OPA >= {minimum}"
)


class OpaToolchainError(RuntimeError):
    """OPA is missing, too old or cannot be built; the message names the fix."""


def _hint() -> str:
    return INSTALL_HINT.format(pinned=OPA_PINNED_VERSION, minimum=OPA_MIN_VERSION)


def parse_version(text: str) -> tuple[int, ...]:
    match = re.fullmatch(r"v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?", text.strip())
    if not match:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(part) for part in match.groups())


def opa_version(binary: Path) -> str:
    """Ask the binary itself: a file named `opa` proves nothing."""
    try:
        result = subprocess.run(
            [str(binary), "version"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OpaToolchainError(f"cannot run {binary} version: {exc}; {_hint()}") from None
    match = re.search(r"^Version:\s*(\S+)", result.stdout, re.MULTILINE)
    if result.returncode != 0 or not match:
        raise OpaToolchainError(
            f"{binary} does not look like OPA (`opa version` gave exit code "
            f"{result.returncode}); {_hint()}"
        )
    return match.group(1)


def _is_recent_enough(version: str) -> bool:
    try:
        return parse_version(version) >= parse_version(OPA_MIN_VERSION)
    except ValueError:
        return False


def pinned_build_path(settings: Settings, version: str = OPA_PINNED_VERSION) -> Path:
    return tools_root(settings) / f"opa-v{version}" / "opa"


def find_opa(settings: Settings) -> Path:
    """Resolve the OPA to run, in order: the configured binary, `opa` on PATH, the pinned build.

    A configured binary that is unusable is an error (the operator asked for it); a too-old
    `opa` on PATH is passed over in favour of the pinned build, and named if that is absent.
    """
    if settings.opa_binary:
        binary = Path(settings.opa_binary)
        if not binary.is_file() or not os.access(binary, os.X_OK):
            raise OpaToolchainError(
                f"MLFLOW_SECURE_OPA_BINARY={binary} is not an executable file; {_hint()}"
            )
        version = opa_version(binary)
        if not _is_recent_enough(version):
            raise OpaToolchainError(
                f"MLFLOW_SECURE_OPA_BINARY={binary} is OPA {version}, older than the minimum "
                f"{OPA_MIN_VERSION}; {_hint()}"
            )
        return binary

    passed_over = ""
    on_path = shutil.which("opa")
    if on_path:
        version = opa_version(Path(on_path))
        if _is_recent_enough(version):
            return Path(on_path)
        passed_over = f" (`opa` on PATH at {on_path} is {version}, older than {OPA_MIN_VERSION})"

    pinned = pinned_build_path(settings)
    if pinned.is_file() and _is_recent_enough(opa_version(pinned)):
        return pinned
    raise OpaToolchainError(f"no usable OPA found{passed_over}; {_hint()}")


def install_opa(
    settings: Settings, version: str = OPA_PINNED_VERSION, link_dir: Path | None = None
) -> Path:
    """Build OPA `version` with `go install` into the tools cache (once) and link it.

    The build goes to a temporary directory first and is renamed into place, so an
    interrupted build never leaves a half-written binary that a later run would trust.
    """
    target = pinned_build_path(settings, version)
    if not (target.is_file() and opa_version(target).lstrip("v") == version):
        go = shutil.which("go")
        if not go:
            raise OpaToolchainError(
                "building OPA needs the Go toolchain (`go` on PATH): install Go >= 1.23, "
                "or set MLFLOW_SECURE_OPA_BINARY to an OPA you already have"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".build-{os.getpid()}"
        staging.mkdir(exist_ok=True)
        env = {**os.environ, "GOBIN": str(staging), "CGO_ENABLED": "0", "GOFLAGS": "-trimpath"}
        result = subprocess.run(
            [go, "install", f"{OPA_MODULE}@v{version}"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        built = staging / "opa"
        if result.returncode != 0 or not built.is_file():
            shutil.rmtree(staging, ignore_errors=True)
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
            raise OpaToolchainError(f"`go install {OPA_MODULE}@v{version}` failed:\n{tail}")
        os.replace(built, target)
        shutil.rmtree(staging, ignore_errors=True)

    if link_dir is not None:
        link_dir.mkdir(parents=True, exist_ok=True)
        link = link_dir / "opa"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    return target
