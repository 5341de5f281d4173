"""Bad configuration stops start-up with one clear message: no traceback, no OPA left."""

import socket
import time

import pytest

from tests.support import servers

pytestmark = pytest.mark.e2e


def refused(tmp_path, timeout=90, **kwargs) -> str:
    server = servers.launch(tmp_path, **kwargs)
    try:
        server.process.wait(timeout=timeout)
    except servers.subprocess.TimeoutExpired:
        server.kill()
        raise AssertionError(f"server did not refuse to start:\n{server.log()}") from None
    log = server.log()
    assert "Traceback" not in log, log
    assert server.opa_pids() == []
    return log


def test_unparseable_policy(tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "broken.rego").write_text("package mlflow.authz\n\nallow if {\n")
    log = refused(tmp_path, env={"MLFLOW_SECURE_POLICY_DIR": str(policies)})
    assert "mlflow-secure: cannot start: the policies in" in log
    assert "broken.rego:" in log  # file and line for the policy author


def test_unparseable_shadow_candidate(tmp_path):
    candidate = tmp_path / "candidate"
    candidate.mkdir()
    (candidate / "broken.rego").write_text("package mlflow.authz\n\nallow if {\n")
    log = refused(tmp_path, env={"MLFLOW_SECURE_SHADOW_POLICY_DIR": str(candidate)})
    assert "mlflow-secure: cannot start: shadow mode: the policies in" in log
    assert "broken.rego:" in log


def test_missing_policy_dir(tmp_path):
    log = refused(tmp_path, env={"MLFLOW_SECURE_POLICY_DIR": str(tmp_path / "nowhere")})
    assert "does not exist (MLFLOW_SECURE_POLICY_DIR)" in log


@pytest.mark.parametrize("url", ["ftp://opa:21", "opa:8181", "http://admin:hunter2@opa:8181"])
def test_malformed_opa_url(tmp_path, url):
    log = refused(tmp_path, env={"MLFLOW_SECURE_OPA_URL": url})
    assert "mlflow-secure: cannot start: MLFLOW_SECURE_OPA_URL" in log
    assert "hunter2" not in log


def test_missing_opa_binary(tmp_path):
    log = refused(tmp_path, env={"MLFLOW_SECURE_OPA_BINARY": str(tmp_path / "no-opa")})
    assert "is not an executable file" in log
    assert "mlflow-secure opa install" in log


def test_invalid_setting(tmp_path):
    log = refused(tmp_path, env={"MLFLOW_SECURE_OPA_TIMEOUT": "soon"})
    assert "MLFLOW_SECURE_OPA_TIMEOUT has an invalid value" in log


def test_a_missing_master_key_file_names_the_fix(tmp_path):
    log = refused(tmp_path, env={"MLFLOW_SECURE_MASTER_KEY_FILE": str(tmp_path / "none.key")})
    assert "MLFLOW_SECURE_MASTER_KEY_FILE names" in log
    assert "mlflow-secure keys generate-master-key >" in log


def test_a_master_key_file_others_can_read_is_refused(tmp_path):
    key_file = tmp_path / "master.key"
    key_file.write_text("A" * 43 + "=\n")
    key_file.chmod(0o644)
    log = refused(tmp_path, env={"MLFLOW_SECURE_MASTER_KEY_FILE": str(key_file)})
    assert f"run: chmod 600 {key_file}" in log
    assert "A" * 43 not in log


def test_multi_worker_refusal_does_not_respawn_forever(tmp_path):
    started = time.monotonic()
    log = refused(tmp_path, workers=3, env={"MLFLOW_SECURE_OPA_TIMEOUT": "soon"})
    assert "MLFLOW_SECURE_OPA_TIMEOUT has an invalid value" in log
    assert time.monotonic() - started < 60


def test_plaintext_bind_on_all_interfaces_is_refused(tmp_path):
    log = refused(tmp_path, host="0.0.0.0")
    assert "refusing to serve plaintext HTTP on non-loopback address '0.0.0.0'" in log


def test_plaintext_bind_allowed_when_operator_opts_in(tmp_path):
    server = servers.start(
        tmp_path,
        host="0.0.0.0",
        env={"MLFLOW_SECURE_ALLOW_INSECURE_BIND": "true"},
        extra_args=("--allowed-hosts", "127.0.0.1:*,localhost:*"),
    )
    try:
        assert server.get("/health").status_code == 200
        assert server.get("/api/2.0/mlflow/experiments/search").status_code == 401
    finally:
        server.interrupt()


def test_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = servers.launch(tmp_path, extra_args=("--port", str(port)))
        try:
            server.process.wait(timeout=90)
        except servers.subprocess.TimeoutExpired:
            server.kill()
            raise
        log = server.log()
        # (MLflow 3.17's CLI exits 0 whatever its server subprocess returned.)
        assert "address already in use" in log.lower(), log
        time.sleep(1)
        assert server.opa_pids() == []
