"""`mlflow-secure`: the command line (one group per capability)."""

from mlflow_secure.cli.main import main

__all__ = ["main"]
