"""The context headers every request of an mlflow-secure client carries (none of them secret).

- ``X-MLflow-Secure-Client: mlflow-secure/<version>``: which client build made the request.
- ``X-MLflow-Secure-Encryption``: what client-side artifact encryption it performs.
- ``X-MLflow-Secure-Project: <name>``, only when ``MLFLOW_SECURE_PROJECT`` is set: the project
  that experiments and registered models created without an ``mlflow.secure.project`` tag go
  into. It chooses among the caller's projects; the server still decides whether the caller
  may create anything there. A value that is not a project name is left out with a warning
  (once per value): MLflow swallows a header provider's exceptions and would then drop every
  header of this module, so raising could not stop the request anyway.

Free of MLflow: the header provider and the CLI both use it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping

from mlflow_secure import __version__
from mlflow_secure.client.errors import setting

_logger = logging.getLogger(__name__)

CLIENT_HEADER = "X-MLflow-Secure-Client"
ENCRYPTION_HEADER = "X-MLflow-Secure-Encryption"
PROJECT_HEADER = "X-MLflow-Secure-Project"
ENV_PROJECT = "MLFLOW_SECURE_PROJECT"

# A project name as the identity store accepts it (`identity.store.NAME_PATTERN`): safe in a
# header, and anything else could not name a project anyway.
PROJECT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")
_SHOWN_VALUE_CHARS = 80
_warned_values: set[str] = set()
_warned_lock = threading.Lock()


def invalid_project_message(value: str) -> str | None:
    """Why ``value`` cannot name a project, or None when it can."""
    if PROJECT_NAME_RE.fullmatch(value):
        return None
    shown = value if len(value) <= _SHOWN_VALUE_CHARS else value[:_SHOWN_VALUE_CHARS] + "…"
    return (
        f"{ENV_PROJECT}={shown!r} is not a project name (1 to 64 letters, digits and . _ @ + -, "
        "starting with a letter or digit)"
    )


def default_project(environ: Mapping[str, str] | None = None) -> str | None:
    """The project ``MLFLOW_SECURE_PROJECT`` names (surrounding whitespace ignored, empty
    meaning unset), or None; an invalid value is ignored with a warning, once per value."""
    env = os.environ if environ is None else environ
    value = setting(env, ENV_PROJECT)
    if value is None:
        return None
    problem = invalid_project_message(value)
    if problem is None:
        return value
    with _warned_lock:
        first = value not in _warned_values
        _warned_values.add(value)
    if first:
        _logger.warning(
            "%s: it is ignored, so new experiments and registered models without an "
            "mlflow.secure.project tag go to your default project. Fix or unset it.",
            problem,
        )
    return None


def context_headers(
    environ: Mapping[str, str] | None = None, encryption: str = "none"
) -> dict[str, str]:
    """The headers for one request (never raises: they are only context). `encryption`: what
    artefact encryption this client performs ("none" for the CLI, which uploads none)."""
    headers = {
        CLIENT_HEADER: f"mlflow-secure/{__version__}",
        ENCRYPTION_HEADER: encryption,
    }
    if project := default_project(environ):
        headers[PROJECT_HEADER] = project
    return headers
