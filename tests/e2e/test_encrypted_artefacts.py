"""Client-side encryption end to end: a real training script with the stock MLflow client
(scikit-learn, log_artifact, log_model, register, alias, load by alias, download) against a
real server, OPA and the bundled policies; the artefact store holds only ciphertext, and
team B, with the stored bytes in hand, cannot decrypt them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlflow_secure.crypto.header import MAGIC
from tests.support import servers, teams
from tests.support.encrypted import upload_encrypted

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).parent / "scripts" / "train_fraud_model.py"
MARKER = "PLAINTEXT-MARKER-7f3a"


def experiment(actor, name: str, project: str, classification: str) -> str:
    tags = [
        {"key": "mlflow.secure.project", "value": project},
        {"key": "mlflow.secure.classification", "value": classification},
    ]
    created = actor.call(
        "POST", "/2.0/mlflow/experiments/create", json={"name": name, "tags": tags}
    )
    assert created.status_code == 200, created.text
    return created.json()["experiment_id"]


def train(server, key: str, experiment_id: str, model: str, tmp_path: Path) -> dict:
    env = {
        **os.environ,  # MLFLOW_S3_ENDPOINT_URL and AWS_* too, for a direct bucket
        "MLFLOW_TRACKING_URI": server.url,
        "MLFLOW_TRACKING_TOKEN": key,
        "HOME": str(tmp_path),  # no ~/.mlflow/credentials from the developer
    }
    done = subprocess.run(
        [sys.executable, str(SCRIPT), experiment_id, MARKER, model],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("encrypted")
    server = servers.start(root, workers=2, env={"MLFLOW_SECURE_AUTH_MAX_FAILURES": "1000"})
    yield server, teams.populate(server), root
    server.kill()


def stored_files(root: Path, experiment_id: str) -> list[Path]:
    return [p for p in (root / "artifacts" / experiment_id).rglob("*") if p.is_file()]


def test_a_training_script_works_unchanged_and_the_store_holds_only_ciphertext(world, tmp_path):
    server, actors, root = world
    alice = actors["alice"]
    exp = experiment(alice, "fraud-detection", "fraud", "confidential")
    result = train(server, alice.key, exp, "fraud-model", tmp_path)
    assert result["predicted"] == result["expected"]
    assert result["notes_ok"]

    files = stored_files(root, exp)
    assert len(files) >= 5  # notes, MLmodel, model.pkl, conda/python env, requirements, ...
    for path in files:
        data = path.read_bytes()
        assert data.startswith(MAGIC), path
        assert MARKER.encode() not in data, path
        assert b"sklearn" not in data, path  # MLmodel and requirements name the flavour
    assert any(f"/{result['model_id']}/" in str(p) for p in files)  # the logged model's too
    assert any(p.name == "traces.json" for p in files)  # and the trace's data
    assert result["trace_spans"] == [1]

    # bob has the bytes (a stolen bucket) and a key of his own: neither opens them
    bob = MlflowClient(tracking_uri=server.url)
    os.environ["MLFLOW_TRACKING_TOKEN"] = actors["bob"].key
    try:
        with pytest.raises(MlflowException):
            bob.download_artifacts(result["run_id"], "reports/notes.txt", str(tmp_path))
        notes = next(p for p in files if p.name == "notes.txt")
        from mlflow_secure.crypto import artefact

        header = artefact.read_header_of(notes, "notes")
        refused = actors["bob"].call(
            "POST",
            "/2.0/mlflow-secure/keys/data-keys/unwrap",
            json={
                "key_id": header.key_id,
                "run_id": result["run_id"],
                "path": "reports/notes.txt",
            },
        )
        assert refused.status_code == 404, refused.text
    finally:
        del os.environ["MLFLOW_TRACKING_TOKEN"]


def test_below_the_classification_threshold_artefacts_stay_plaintext(world, tmp_path):
    server, actors, root = world
    bob = actors["bob"]
    exp = experiment(bob, "churn-internal", "churn", "internal")
    result = train(server, bob.key, exp, "churn-model", tmp_path)
    assert result["notes_ok"]
    notes = [p for p in stored_files(root, exp) if p.name == "notes.txt"]
    assert notes[0].read_bytes() == (MARKER * 50).encode()


def test_the_ui_downloads_are_decrypted_for_their_reader_only(world, tmp_path):
    server, actors, root = world
    alice, bob = actors["alice"], actors["bob"]
    exp = experiment(alice, "fraud-ui", "fraud", "confidential")
    result = train(server, alice.key, exp, "fraud-ui-model", tmp_path)
    run = result["run_id"]

    shown = alice.call(
        "GET", "/get-artifact", prefix="", params={"path": "reports/notes.txt", "run_uuid": run}
    )
    assert shown.status_code == 200, shown.text
    assert shown.content == (MARKER * 50).encode()
    assert shown.headers["content-length"] == str(len(MARKER) * 50)
    files = alice.call(
        "GET",
        f"/2.0/mlflow/logged-models/{result['model_id']}/artifacts/files",
        prefix="/ajax-api",
        params={"artifact_file_path": "MLmodel"},
    )
    assert files.status_code == 200, files.text
    assert b"sklearn" in files.content
    # the client's own download route passes the ciphertext through
    raw = alice.call(
        "GET", f"/2.0/mlflow-artifacts/artifacts/{exp}/{run}/artifacts/reports/notes.txt"
    )
    assert raw.status_code == 200
    assert raw.content.startswith(MAGIC)
    # team B sees nothing, not even that the run exists
    refused = bob.call(
        "GET", "/get-artifact", prefix="", params={"path": "reports/notes.txt", "run_uuid": run}
    )
    assert refused.status_code == 404
    assert MARKER.encode() not in refused.content

    # a ciphertext copied to another path of the run is refused on upload ...
    copy_path = f"{exp}/{run}/artifacts/reports/copy.txt"
    copied = alice.call("PUT", f"/2.0/mlflow-artifacts/artifacts/{copy_path}", content=raw.content)
    assert copied.status_code == 400, copied.text
    assert "not encrypted with a data key issued for it" in copied.json()["message"]
    # ... and, planted in the store behind the server's back, does not open there either
    planted = root / "artifacts" / copy_path
    planted.write_bytes(raw.content)
    moved = alice.call(
        "GET", "/get-artifact", prefix="", params={"path": "reports/copy.txt", "run_uuid": run}
    )
    assert moved.status_code == 403, moved.text
    assert "was not issued for this artefact" in moved.json()["message"]
    assert MARKER.encode() not in moved.content


def test_a_client_without_the_plugin_cannot_store_plaintext_where_encryption_is_required(
    world,
):
    _, actors, root = world
    alice = actors["alice"]
    exp = experiment(alice, "fraud-no-plugin", "fraud", "confidential")
    run = alice.call("POST", "/2.0/mlflow/runs/create", json={"experiment_id": exp})
    run_id = run.json()["run"]["info"]["run_id"]
    where = f"{exp}/{run_id}/artifacts/weights.bin"
    put = alice.call("PUT", f"/2.0/mlflow-artifacts/artifacts/{where}", content=b"plain" * 100)
    assert put.status_code == 400, put.text
    message = put.json()["message"]
    assert "must be encrypted" in message
    assert "pip install mlflow-secure" in message
    assert "nothing was stored" in message
    assert not (root / "artifacts" / where).exists()
    posted = alice.call(
        "POST",
        "/2.0/mlflow/upload-artifact",
        prefix="/ajax-api",  # the UI's upload route
        params={"run_uuid": run_id, "path": "w.bin"},
        content=b"plain",
        headers={"Content-Type": "application/octet-stream"},
    )
    assert posted.status_code == 400, posted.text
    assert "must be encrypted" in posted.json()["message"]
    empty = alice.call("PUT", f"/2.0/mlflow-artifacts/artifacts/{where}", content=b"")
    assert empty.status_code == 400
    # multipart uploads send the bytes elsewhere: the client must say it encrypts
    create = alice.call("POST", f"/2.0/mlflow-artifacts/mpu/create/{where}", json={"path": where})
    assert create.status_code == 400, create.text
    assert "this client does not encrypt artefacts" in create.json()["message"]
    declared = alice.call(
        "POST",
        f"/2.0/mlflow-artifacts/mpu/create/{where}",
        json={"path": where},
        headers={"X-MLflow-Secure-Encryption": "mlse-v1"},
    )
    assert "must be encrypted" not in declared.text
    # below the threshold, plaintext is what it always was
    internal = experiment(alice, "fraud-internal", "fraud", "internal")
    plain_run = alice.call("POST", "/2.0/mlflow/runs/create", json={"experiment_id": internal})
    plain_id = plain_run.json()["run"]["info"]["run_id"]
    ok = alice.call(
        "PUT",
        f"/2.0/mlflow-artifacts/artifacts/{internal}/{plain_id}/artifacts/w.bin",
        content=b"plain",
    )
    assert ok.status_code == 200, ok.text


def test_the_wsgi_front_door_decrypts_ui_downloads_too(tmp_path):
    server = servers.start(tmp_path, extra_args=("--gunicorn-opts", "--timeout 60"))
    try:
        actors = teams.populate(server)
        alice = actors["alice"]
        exp = experiment(alice, "fraud-wsgi", "fraud", "confidential")
        run = alice.call("POST", "/2.0/mlflow/runs/create", json={"experiment_id": exp})
        run_id = run.json()["run"]["info"]["run_id"]
        upload_encrypted(alice, exp, run_id, "notes.txt", MARKER.encode())
        shown = alice.call(
            "GET", "/get-artifact", prefix="", params={"path": "notes.txt", "run_uuid": run_id}
        )
        assert shown.status_code == 200, shown.text
        assert shown.content == MARKER.encode()  # the bytes read to check went on to MLflow
        plain = alice.call(
            "PUT",
            f"/2.0/mlflow-artifacts/artifacts/{exp}/{run_id}/artifacts/plain.txt",
            content=MARKER.encode(),
        )
        assert plain.status_code == 400, plain.text
        assert "must be encrypted" in plain.json()["message"]
    finally:
        server.kill()


@pytest.fixture(scope="module")
def s3_bucket(tmp_path_factory):
    """A real S3-compatible server (moto's standalone server) with one bucket."""
    import boto3

    port = servers.free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    env = {
        "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "mlflow-secure-test",
        "AWS_SECRET_ACCESS_KEY": "mlflow-secure-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    client = boto3.client(
        "s3",
        endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    import time

    deadline = time.monotonic() + 30
    while True:
        try:
            client.create_bucket(Bucket="models")
            break
        except Exception:
            if time.monotonic() > deadline or moto.poll() is not None:
                raise
            time.sleep(0.2)
    try:
        yield client, env
    finally:
        moto.terminate()
        moto.wait(timeout=30)
        log.close()


def test_a_direct_s3_bucket_holds_only_ciphertext(s3_bucket, tmp_path, monkeypatch):
    client, s3_env = s3_bucket
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    server = servers.start(
        tmp_path,
        extra_args=("--no-serve-artifacts", "--default-artifact-root", "s3://models/"),
        env={**s3_env, "MLFLOW_SECURE_AUTH_MAX_FAILURES": "1000"},
    )
    try:
        actors = teams.populate(server)
        alice = actors["alice"]
        exp = experiment(alice, "fraud-s3", "fraud", "confidential")
        result = train(server, alice.key, exp, "fraud-s3-model", tmp_path)
        assert result["predicted"] == result["expected"]
        assert result["notes_ok"]
        stored = client.list_objects_v2(Bucket="models")["Contents"]
        assert len(stored) >= 5
        for item in stored:
            data = client.get_object(Bucket="models", Key=item["Key"])["Body"].read()
            assert data.startswith(MAGIC), item["Key"]
            assert MARKER.encode() not in data, item["Key"]
            assert b"sklearn" not in data, item["Key"]
        # a file above boto3's multipart threshold (8 MiB): its parts are ciphertext
        from mlflow import MlflowClient

        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", alice.key)
        big = tmp_path / "big.bin"
        big.write_bytes(MARKER.encode() * (12 * 1024 * 1024 // len(MARKER)))
        mlflow_client = MlflowClient(tracking_uri=server.url)
        mlflow_client.log_artifact(result["run_id"], str(big))
        key = next(
            item["Key"]
            for item in client.list_objects_v2(Bucket="models")["Contents"]
            if item["Key"].endswith("/big.bin")
        )
        body = client.get_object(Bucket="models", Key=key)["Body"].read()
        assert body.startswith(MAGIC)
        assert MARKER.encode() not in body
        back = mlflow_client.download_artifacts(result["run_id"], "big.bin", str(tmp_path / "o"))
        assert Path(back).read_bytes() == big.read_bytes()
        # the UI's view, read by the server from the bucket, decrypted for alice
        shown = alice.call(
            "GET",
            "/get-artifact",
            prefix="",
            params={"path": "reports/notes.txt", "run_uuid": result["run_id"]},
        )
        assert shown.status_code == 200, shown.text
        assert shown.content == (MARKER * 50).encode()
    finally:
        server.kill()
