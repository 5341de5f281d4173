"""The supervisor with a real OPA: election, restart, failover, cleanup."""

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from mlflow_secure.config import bundled_policy_dir
from mlflow_secure.policy.managed_opa import OpaSupervisor, ensure_private_dir, instance_dir


def wait_until(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def answers(sock: Path) -> bool:
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(sock))) as client:
            return client.get("http://opa/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") == -1


@pytest.fixture
def private(tmp_path):
    return ensure_private_dir(tmp_path / "run")


def test_private_dir_is_0700_and_tightened(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    ensure_private_dir(loose)
    assert loose.stat().st_mode & 0o777 == 0o700


def test_private_dir_refuses_a_symlink(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(PermissionError, match="not a plain directory"):
        ensure_private_dir(tmp_path / "link")


def test_private_dir_refuses_another_users_directory(tmp_path, monkeypatch):
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    owner = foreign.stat().st_uid
    monkeypatch.setattr(os, "getuid", lambda: owner + 1)  # we are now someone else
    with pytest.raises(PermissionError, match=f"owned by uid {owner}, not us"):
        ensure_private_dir(foreign)


def test_instance_dir_is_keyed_by_mlflow_boot_id(tmp_path, monkeypatch):
    monkeypatch.setenv("_MLFLOW_SERVER_BOOT_ID", "abc123../x")
    directory = instance_dir(tmp_path / "root")
    assert directory == tmp_path / "root" / "abc123x"
    assert directory.stat().st_mode & 0o777 == 0o700


def test_instance_dir_refuses_a_root_too_long_for_a_socket(tmp_path, monkeypatch):
    monkeypatch.setenv("_MLFLOW_SERVER_BOOT_ID", "0123456789abcdef0123456789abcdef")
    assert instance_dir(tmp_path / "r").name == "0123456789abcdef"  # shortened
    with pytest.raises(PermissionError, match="too long for a unix socket path"):
        instance_dir(tmp_path / ("x" * 120))


def test_one_supervisor_per_directory_then_failover(opa_binary, private):
    first = OpaSupervisor(opa_binary, bundled_policy_dir(), private)
    second = OpaSupervisor(opa_binary, bundled_policy_dir(), private)
    first.start()
    second.start()
    try:
        assert wait_until(lambda: answers(private / "opa.sock"))
        time.sleep(0.3)
        assert [first.is_supervisor, second.is_supervisor].count(True) == 1
        leader, follower = (first, second) if first.is_supervisor else (second, first)
        old_pid = leader.opa_pid
        leader.stop()
        assert not alive(old_pid)
        assert wait_until(lambda: follower.is_supervisor and answers(private / "opa.sock"))
        assert follower.opa_pid != old_pid
    finally:
        first.stop()
        second.stop()


def test_dead_opa_is_restarted(opa_binary, private):
    supervisor = OpaSupervisor(opa_binary, bundled_policy_dir(), private)
    supervisor.start()
    try:
        assert wait_until(lambda: answers(private / "opa.sock"))
        old_pid = supervisor.opa_pid
        os.kill(old_pid, signal.SIGKILL)
        assert wait_until(lambda: supervisor.opa_pid not in (None, old_pid))
        assert wait_until(lambda: answers(private / "opa.sock"))
    finally:
        supervisor.stop()
    assert not (private / "opa.sock").exists()


def test_stop_before_election_never_starts_opa(opa_binary, private):
    holder = OpaSupervisor(opa_binary, bundled_policy_dir(), private)
    holder.start()
    waiting = OpaSupervisor(opa_binary, bundled_policy_dir(), private)
    waiting.start()
    try:
        assert wait_until(lambda: answers(private / "opa.sock"))
        follower = waiting if holder.is_supervisor else holder
        follower.stop()
        leader = holder if follower is waiting else waiting
        leader.stop()
        time.sleep(0.5)
        assert follower.opa_pid is None
    finally:
        holder.stop()
        waiting.stop()


def test_opa_gets_go_runtime_settings_unless_the_operator_chose_some():
    from mlflow_secure.policy.managed_opa import opa_environment

    tuned = opa_environment({"PATH": "/bin"})
    assert tuned["PATH"] == "/bin"
    assert int(tuned["GOMAXPROCS"]) >= 1
    assert tuned["GOGC"] == "400"
    chosen = opa_environment({"GOMAXPROCS": "8", "GOGC": "100"})
    assert (chosen["GOMAXPROCS"], chosen["GOGC"]) == ("8", "100")


def test_every_worker_can_tell_whether_the_opa_runs(opa_binary, private):
    """The supervisor records OPA's pid beside its socket: the follower (another worker)
    tells a running OPA from a stopped or dead one without owning the process."""
    first = OpaSupervisor(opa_binary, bundled_policy_dir(), private)
    second = OpaSupervisor(opa_binary, bundled_policy_dir(), private)
    first.start()
    second.start()
    try:
        assert wait_until(lambda: answers(private / "opa.sock"))
        leader, follower = (first, second) if first.is_supervisor else (second, first)
        pid = leader.opa_pid
        assert (private / "opa.pid").read_text().strip() == str(pid)
        assert leader.opa_running() is True
        assert follower.opa_running() is True
        os.kill(pid, signal.SIGSTOP)
        assert wait_until(lambda: follower.opa_running() is False)
        assert leader.opa_running() is False
        os.kill(pid, signal.SIGCONT)
        assert wait_until(lambda: follower.opa_running() is True)
        os.kill(pid, signal.SIGKILL)
        assert wait_until(lambda: leader.opa_pid not in (None, pid))  # restarted
        assert wait_until(lambda: follower.opa_running() is True)
        assert (private / "opa.pid").read_text().strip() == str(leader.opa_pid)
    finally:
        first.stop()
        second.stop()
    assert not (private / "opa.pid").exists()
