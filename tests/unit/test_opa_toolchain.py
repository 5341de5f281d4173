import os
import stat
from pathlib import Path

import pytest

from mlflow_secure.config import Settings
from mlflow_secure.policy.toolchain import (
    OPA_MIN_VERSION,
    OPA_PINNED_VERSION,
    OpaToolchainError,
    find_opa,
    install_opa,
    opa_version,
    parse_version,
    pinned_build_path,
)


def fake_opa(directory: Path, version: str, name: str = "opa") -> Path:
    """A stand-in executable that answers `opa version` like OPA does."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\necho 'Version: {version}'\necho 'Go Version: go1'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_parse_version():
    assert parse_version("1.22.3") == (1, 22, 3)
    assert parse_version("v0.70.0-dev") == (0, 70, 0)
    with pytest.raises(ValueError, match="not a version"):
        parse_version("latest")


def test_real_pinned_opa_reports_its_version(opa_binary):
    assert opa_version(opa_binary) == OPA_PINNED_VERSION


def test_configured_binary_is_used(tmp_path):
    binary = fake_opa(tmp_path, "1.5.0")
    assert find_opa(Settings(opa_binary=str(binary))) == binary


def test_configured_binary_too_old_names_the_fix(tmp_path):
    binary = fake_opa(tmp_path, "0.68.0")
    with pytest.raises(OpaToolchainError) as info:
        find_opa(Settings(opa_binary=str(binary)))
    message = str(info.value)
    assert f"older than the minimum {OPA_MIN_VERSION}" in message
    assert "mlflow-secure opa install" in message


def test_configured_binary_missing_names_the_fix(tmp_path):
    with pytest.raises(OpaToolchainError, match=r"not an executable file.*opa install"):
        find_opa(Settings(opa_binary=str(tmp_path / "nope")))


def test_not_opa_at_all_is_refused(tmp_path):
    impostor = tmp_path / "opa"
    impostor.write_text("#!/bin/sh\necho hello\n")
    impostor.chmod(0o755)
    with pytest.raises(OpaToolchainError, match="does not look like OPA"):
        find_opa(Settings(opa_binary=str(impostor)))


def test_too_old_opa_on_path_is_passed_over_for_the_pinned_build(tmp_path, monkeypatch):
    fake_opa(tmp_path / "bin", "0.50.0")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    settings = Settings(tools_dir=str(tmp_path / "tools"))
    with pytest.raises(OpaToolchainError, match=r"0\.50\.0, older than"):
        find_opa(settings)
    pinned = fake_opa(pinned_build_path(settings).parent, OPA_PINNED_VERSION)
    assert find_opa(settings) == pinned


def test_recent_opa_on_path_is_used(tmp_path, monkeypatch):
    on_path = fake_opa(tmp_path / "bin", "1.30.0")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    assert find_opa(Settings(tools_dir=str(tmp_path / "tools"))) == on_path


def test_nothing_found_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(OpaToolchainError, match=r"no usable OPA found.*opa install"):
        find_opa(Settings(tools_dir=str(tmp_path / "tools")))


def test_install_reuses_the_cached_build_and_links_it(tmp_path, monkeypatch):
    settings = Settings(tools_dir=str(tmp_path / "tools"))
    cached = fake_opa(pinned_build_path(settings).parent, OPA_PINNED_VERSION)
    monkeypatch.setenv("PATH", str(tmp_path / "no-go-here"))  # would fail if it tried to build
    assert install_opa(settings, link_dir=tmp_path / "bin") == cached
    assert (tmp_path / "bin" / "opa").resolve() == cached.resolve()


def test_install_without_go_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "no-go-here"))
    with pytest.raises(OpaToolchainError, match="needs the Go toolchain"):
        install_opa(Settings(tools_dir=str(tmp_path / "tools")))
