"""Which files the encrypting repositories treat as a run's or logged model's artefacts."""

from __future__ import annotations

import pytest

from mlflow_secure.client.artifacts import EncryptingS3ArtifactRepository, owner_of

RUN = "0a" * 16
MODEL = "m-" + "1b" * 16


TRACE = "tr-" + "2c" * 16


def test_a_traces_data_has_its_trace_as_owner():
    owner = owner_of(f"mlflow-artifacts:/3/traces/{TRACE}/artifacts")
    assert owner is not None
    assert owner.named() == {"trace_id": TRACE}
    assert owner.path("traces.json") == "traces.json"


@pytest.mark.parametrize(
    ("uri", "run", "model", "root"),
    [
        (f"http://h/api/2.0/mlflow-artifacts/artifacts/3/{RUN}/artifacts", RUN, None, ""),
        (f"mlflow-artifacts:/3/{RUN}/artifacts/model/sub", RUN, None, "model/sub"),
        (f"s3://bucket/team/x/{RUN}/artifacts", RUN, None, ""),  # a custom experiment root
        (f"s3://bucket/3/models/{MODEL}/artifacts", None, MODEL, ""),
        (f"s3://bucket/3/models/{MODEL}/artifacts/data/", None, MODEL, "data"),
    ],
)
def test_owners_are_found_under_any_root(uri, run, model, root):
    owner = owner_of(uri)
    assert owner is not None
    assert (owner.run_id, owner.logged_model_id, owner.root) == (run, model, root)
    assert owner.path("a/b.txt") == "/".join(p for p in (root, "a/b.txt") if p)


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/3",  # an experiment's root
        f"s3://bucket/3/{RUN}",  # not inside artifacts
        f"s3://bucket/3/{RUN.upper()}/artifacts",  # MLflow's ids are lower-case hex
        "s3://bucket/traces/tr-1/artifacts",  # not a trace id MLflow makes
    ],
)
def test_other_locations_are_left_to_mlflow(uri):
    assert owner_of(uri) is None


def test_inside_the_server_the_s3_repository_is_mlflows_own(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    repo = EncryptingS3ArtifactRepository(f"s3://bucket/3/{RUN}/artifacts")
    assert repo._owner is None
