"""The key service: per-project key-encryption keys and per-artefact data keys.

`wrapping` holds the master key (or names an external KMS) that wraps project keys;
`models` the tables; `service` the operations (issue, open, rotate, retire, destroy);
`resources` what each request touches, for the policy; `api` the HTTP routes under
/api/2.0/mlflow-secure/keys/. The artefact file format is `mlflow_secure.crypto`.
"""
