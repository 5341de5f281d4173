"""`python -m mlflow_secure.cli`: the same as the `mlflow-secure` command."""

import sys

from mlflow_secure.cli.main import main

sys.exit(main())
