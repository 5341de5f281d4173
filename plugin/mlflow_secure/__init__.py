"""mlflow-secure: authentication, OPA authorisation and audit for MLflow tracking servers."""

__version__ = "0.1.0"
