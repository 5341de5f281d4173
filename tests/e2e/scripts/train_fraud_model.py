"""An ordinary training script, unchanged by mlflow-secure: the stock MLflow client, a
tracking URI and an API key in the environment. Run by test_encrypted_artefacts.py."""

import json
import os
import sys
import tempfile

import mlflow
import numpy as np
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

experiment_id, marker, model_name = sys.argv[1], sys.argv[2], sys.argv[3]
rng = np.random.default_rng(7)
features = rng.normal(size=(200, 4))
labels = (features[:, 0] + features[:, 1] > 0).astype(int)

with mlflow.start_run(experiment_id=experiment_id) as run:
    model = LogisticRegression(C=0.5).fit(features, labels)
    mlflow.log_param("C", 0.5)
    mlflow.log_metric("accuracy", float(model.score(features, labels)))
    with tempfile.TemporaryDirectory() as scratch:
        notes = os.path.join(scratch, "notes.txt")
        with open(notes, "w") as out:
            out.write(marker * 50)
        mlflow.log_artifact(notes, artifact_path="reports")
    info = mlflow.sklearn.log_model(
        model, name="model", registered_model_name=model_name, input_example=features[:2]
    )


@mlflow.trace(name="score")
def score(rows):
    return model.predict(rows).tolist()


mlflow.set_experiment(experiment_id=experiment_id)
score(features[:3])  # a trace, whose data the client uploads as an artefact
mlflow.flush_trace_async_logging()
traces = mlflow.search_traces(locations=[experiment_id], return_type="list")

client = MlflowClient()
version = info.registered_model_version
client.set_registered_model_alias(model_name, "champion", version)
loaded = mlflow.sklearn.load_model(f"models:/{model_name}@champion")
predicted = loaded.predict(features[:5]).tolist()
with tempfile.TemporaryDirectory() as scratch:
    path = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="reports/notes.txt", dst_path=scratch
    )
    with open(path) as handle:
        downloaded = handle.read()
print(
    json.dumps(
        {
            "run_id": run.info.run_id,
            "model_id": info.model_id,
            "version": version,
            "predicted": predicted,
            "expected": model.predict(features[:5]).tolist(),
            "notes_ok": downloaded == marker * 50,
            "trace_spans": [len(trace.data.spans) for trace in traces],
        }
    )
)
