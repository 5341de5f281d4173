"""Answers the front door gives the MLflow UI itself, where stock MLflow has no route that
would answer a signed-in user (the UI asks anyway, expecting MLflow's basic-auth app).

Each entry maps a logical path and method to the policy endpoint that decides it and the
reply built from the authenticated subject alone: nothing is read from the request, and
nothing reaches MLflow. `users/current` is "who am I" (the policy's `mlflow-secure.whoami`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mlflow_secure.identity.subject import Subject
from mlflow_secure.request.listings.core import JsonReply

Answer = Callable[[Subject], JsonReply]


def current_user(subject: Subject) -> JsonReply:
    """The shape of MLflow basic-auth's `GET /users/current`, which the UI reads."""
    user: dict[str, Any] = {
        "id": subject.name,
        "username": subject.name,
        "is_admin": "admin" in subject.identity.roles,
    }
    return JsonReply(200, json.dumps({"user": user}).encode())


ANSWERS: dict[tuple[str, str], tuple[str, Answer]] = {
    ("/api/2.0/mlflow/users/current", "GET"): ("mlflow-secure.whoami", current_user),
}


def answer_for(logical_path: str, method: str) -> tuple[str, Answer] | None:
    return ANSWERS.get((logical_path, "GET" if method == "HEAD" else method))
