"""`SecureAdminClient`: the admin API from Python, like MLflow's ``AuthServiceClient``.

Obtained with ``mlflow.server.get_app_client("secure", tracking_uri=...)`` (entry point group
``mlflow.app.client``) or constructed directly. By default requests go through MLflow's own
``http_request`` with MLflow's default host credentials, so everything that authenticates the
MLflow client works here too: ``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD``, ``MLFLOW_TRACKING_AUTH=secure``, TLS settings, retries.

One convenience on top: when ``MLFLOW_TRACKING_TOKEN`` is unset and ``MLFLOW_SECURE_API_KEY``
(or ``MLFLOW_SECURE_API_KEY_FILE``) is set, that API key is sent as the bearer token, so an
operator needs only the one variable the rest of mlflow-secure documents.

Every method returns the server's parsed JSON answer; a refused request raises
``MlflowException`` (``RestException``) carrying the server's message.

This module imports MLflow only when a request is made through it: the ``mlflow-secure`` CLI
uses the same methods over its own light transport (`Transport`), so that it starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from mlflow.utils.rest_utils import MlflowHostCreds

API_ROOT = "/api/2.0/mlflow-secure"
Json = dict[str, Any]


def _without_none(**fields: Any) -> Json:
    """Only the fields the caller gave: the server treats absent fields as "use the default"."""
    return {name: value for name, value in fields.items() if value is not None}


class Transport(Protocol):
    """Sends one admin API request and returns the parsed JSON answer (``{}`` when empty)."""

    def request(
        self, method: str, endpoint: str, *, json: Json | None = None, params: Json | None = None
    ) -> Json: ...


class MlflowTransport:
    """Requests through MLflow's ``http_request``: MLflow's credentials, TLS settings, retries,
    auth and header plugins; errors as ``MlflowException``."""

    def __init__(self, tracking_uri: str, *, max_retries: int | None = None) -> None:
        if urlsplit(tracking_uri).scheme not in ("http", "https"):
            from mlflow.exceptions import MlflowException
            from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

            raise MlflowException(
                "the mlflow-secure admin API needs an http:// or https:// tracking URI",
                error_code=INVALID_PARAMETER_VALUE,
            )
        self.tracking_uri = tracking_uri
        self.max_retries = max_retries

    def _host_creds(self) -> MlflowHostCreds:
        from mlflow.utils.credentials import get_default_host_creds

        from mlflow_secure.client.auth_provider import (
            ClientError,
            api_key_from_env,
            as_mlflow_error,
        )

        # Read per request, like MLflow's own stores, so a changed environment is honoured.
        creds = get_default_host_creds(self.tracking_uri)
        if not creds.token:
            try:
                key = api_key_from_env()
            except ClientError as exc:
                raise as_mlflow_error(exc) from None
            if key:
                creds.token = key
        return creds

    def request(
        self, method: str, endpoint: str, *, json: Json | None = None, params: Json | None = None
    ) -> Json:
        from mlflow.utils.rest_utils import http_request, verify_rest_response

        kwargs: dict[str, Any] = {}
        if json is not None:
            kwargs["json"] = json
        if params:
            kwargs["params"] = params
        response = http_request(
            self._host_creds(), endpoint, method, max_retries=self.max_retries, **kwargs
        )
        response = verify_rest_response(response, endpoint)
        return response.json() if response.content else {}


class SecureAdminClient:
    """Client of the mlflow-secure admin API (`/api/2.0/mlflow-secure/...`).

    Args:
        tracking_uri: the tracking server's ``http(s)://`` address.
        max_retries: retries of transient failures (429, 5xx); MLflow's default when None.
        transport: how requests travel; by default `MlflowTransport` (MLflow's own
            ``http_request``). The CLI passes its own, which does not load MLflow.
    """

    def __init__(
        self,
        tracking_uri: str,
        *,
        max_retries: int | None = None,
        transport: Transport | None = None,
    ) -> None:
        if transport is None:
            transport = MlflowTransport(tracking_uri, max_retries=max_retries)
        self._transport = transport
        self.tracking_uri = tracking_uri
        self.max_retries = max_retries

    def __repr__(self) -> str:
        return f"SecureAdminClient({self.tracking_uri!r})"

    def _request(
        self, method: str, path: str, *, json: Json | None = None, params: Json | None = None
    ) -> Json:
        return self._transport.request(method, API_ROOT + path, json=json, params=params)

    # ------------------------------------------------------------ who am I

    def whoami(self) -> Json:
        """The caller as the policy sees it: ``{"subject": {...}}``."""
        return self._request("GET", "/whoami")

    # ------------------------------------------------------------ people

    def create_user(
        self,
        name: str,
        *,
        display_name: str | None = None,
        email: str | None = None,
        password: str | None = None,
        roles: list[str] | None = None,
        clearance: str | None = None,
    ) -> Json:
        """``{"user": {...}}``; `password` (optional) lets the person sign in to the UI."""
        body = _without_none(
            name=name,
            display_name=display_name,
            email=email,
            password=password,
            roles=roles,
            clearance=clearance,
        )
        return self._request("POST", "/users/create", json=body)

    def get_user(self, name: str) -> Json:
        """``{"user": {...}}`` for any principal, with its teams and project memberships."""
        return self._request("GET", "/users/get", params={"name": name})

    def list_users(self, kind: str | None = None) -> Json:
        """``{"users": [...]}``: every principal, or only ``kind`` ("user" or "service")."""
        return self._request("GET", "/users/list", params=_without_none(kind=kind))

    def update_user(
        self,
        name: str,
        *,
        display_name: str | None = None,
        email: str | None = None,
        password: str | None = None,
        clearance: str | None = None,
        disabled: bool | None = None,
        default_project: str | None = None,
    ) -> Json:
        """``{"user": {...}}``; only the given fields change.

        `default_project` is where the principal's experiments and registered models go when
        created without an ``mlflow.secure.project`` tag (and no ``MLFLOW_SECURE_PROJECT``).
        """
        body = _without_none(
            name=name,
            display_name=display_name,
            email=email,
            password=password,
            clearance=clearance,
            disabled=disabled,
            default_project=default_project,
        )
        return self._request("PATCH", "/users/update", json=body)

    def delete_user(self, name: str) -> Json:
        return self._request("DELETE", "/users/delete", json={"name": name})

    # ------------------------------------------------------------ service accounts

    def create_service_account(
        self,
        name: str,
        *,
        owner: str | None = None,
        owner_team: str | None = None,
        roles: list[str] | None = None,
        clearance: str | None = None,
        display_name: str | None = None,
    ) -> Json:
        """``{"service_account": {...}}``; owned by the caller unless an owner is given."""
        body = _without_none(
            name=name,
            owner=owner,
            owner_team=owner_team,
            roles=roles,
            clearance=clearance,
            display_name=display_name,
        )
        return self._request("POST", "/service-accounts/create", json=body)

    def list_service_accounts(self) -> Json:
        return self._request("GET", "/service-accounts/list")

    def delete_service_account(self, name: str) -> Json:
        return self._request("DELETE", "/service-accounts/delete", json={"name": name})

    # ------------------------------------------------------------ global roles

    def grant_role(self, principal: str, role: str) -> Json:
        body = {"principal": principal, "role": role}
        return self._request("POST", "/roles/grant", json=body)

    def revoke_role(self, principal: str, role: str) -> Json:
        body = {"principal": principal, "role": role}
        return self._request("POST", "/roles/revoke", json=body)

    # ------------------------------------------------------------ teams

    def create_team(self, name: str, description: str | None = None) -> Json:
        body = _without_none(name=name, description=description)
        return self._request("POST", "/teams/create", json=body)

    def list_teams(self) -> Json:
        return self._request("GET", "/teams/list")

    def delete_team(self, name: str) -> Json:
        return self._request("DELETE", "/teams/delete", json={"name": name})

    def add_team_member(self, team: str, principal: str) -> Json:
        body = {"team": team, "principal": principal}
        return self._request("POST", "/teams/add-member", json=body)

    def remove_team_member(self, team: str, principal: str) -> Json:
        body = {"team": team, "principal": principal}
        return self._request("POST", "/teams/remove-member", json=body)

    # ------------------------------------------------------------ projects

    def create_project(self, name: str, description: str | None = None) -> Json:
        body = _without_none(name=name, description=description)
        return self._request("POST", "/projects/create", json=body)

    def list_projects(self) -> Json:
        return self._request("GET", "/projects/list")

    def delete_project(self, name: str) -> Json:
        return self._request("DELETE", "/projects/delete", json={"name": name})

    def set_project_member(
        self, project: str, role: str, *, principal: str | None = None, team: str | None = None
    ) -> Json:
        """Give one principal or one whole team `role` in `project` (replacing its old role)."""
        body = _without_none(project=project, role=role, principal=principal, team=team)
        return self._request("POST", "/projects/set-member", json=body)

    def remove_project_member(
        self, project: str, *, principal: str | None = None, team: str | None = None
    ) -> Json:
        body = _without_none(project=project, principal=principal, team=team)
        return self._request("POST", "/projects/remove-member", json=body)

    # ------------------------------------------------------------ API keys

    def create_key(
        self,
        scopes: list[str],
        *,
        principal: str | None = None,
        name: str | None = None,
        projects: list[str] | None = None,
        expires_in_seconds: int | None = None,
    ) -> Json:
        """``{"key": <the API key, returned this once only>, "api_key": {...}}``.

        The key belongs to `principal`, or to the caller when None.
        """
        body = _without_none(
            principal=principal,
            name=name,
            scopes=scopes,
            projects=projects,
            expires_in_seconds=expires_in_seconds,
        )
        return self._request("POST", "/keys/create", json=body)

    def list_keys(self, principal: str | None = None, *, all_keys: bool = False) -> Json:
        """``{"api_keys": [...]}``: the caller's keys, `principal`'s, or every key."""
        params = _without_none(principal=principal, all="true" if all_keys else None)
        return self._request("GET", "/keys/list", params=params)

    def revoke_key(self, key_id: str) -> Json:
        return self._request("POST", "/keys/revoke", json={"key_id": key_id})

    def rotate_key(self, key_id: str, grace_seconds: int | None = None) -> Json:
        """``{"key": <new key, returned once>, "api_key": {...}}``; the old key keeps working
        for `grace_seconds` (server default one hour; 0 ends it now)."""
        body = _without_none(key_id=key_id, grace_seconds=grace_seconds)
        return self._request("POST", "/keys/rotate", json=body)

    # ------------------------------------------------------------ encryption keys

    def create_data_key(
        self,
        path: str,
        *,
        run_id: str | None = None,
        logged_model_id: str | None = None,
        trace_id: str | None = None,
        always: bool = False,
    ) -> Json:
        """A fresh data key for one artefact of a run or logged model: ``{"required": true,
        "key_id", "key_version", "data_key" (base64), "project", "artefact"}``, or
        ``{"required": false, "artefact"}`` where its classification needs no encryption
        (unless `always`)."""
        body = _without_none(
            run_id=run_id,
            logged_model_id=logged_model_id,
            trace_id=trace_id,
            path=path,
            always=always or None,
        )
        return self._request("POST", "/keys/data-keys/create", json=body)

    def unwrap_data_key(
        self,
        key_id: str,
        path: str,
        *,
        run_id: str | None = None,
        logged_model_id: str | None = None,
        trace_id: str | None = None,
    ) -> Json:
        """The data key `key_id`, for the artefact it was issued for (same shape as create)."""
        body = _without_none(
            key_id=key_id,
            run_id=run_id,
            logged_model_id=logged_model_id,
            trace_id=trace_id,
            path=path,
        )
        return self._request("POST", "/keys/data-keys/unwrap", json=body)

    def project_keys(self, project: str) -> Json:
        """``{"project", "versions": [{"version", "state", "data_keys", ...}]}``."""
        return self._request("GET", "/keys/projects/get", params={"project": project})

    def rotate_project_key(self, project: str) -> Json:
        """A new project key version; every data key re-wrapped (artefacts untouched)."""
        return self._request("POST", "/keys/projects/rotate", json={"project": project})

    def retire_project_key(self, project: str, version: int) -> Json:
        body = {"project": project, "version": version}
        return self._request("POST", "/keys/projects/retire", json=body)

    def destroy_project_keys(self, project: str, confirm: str) -> Json:
        """Crypto-shredding: every artefact of `project` becomes unrecoverable. `confirm`
        must repeat the project's name."""
        body = {"project": project, "confirm": confirm}
        return self._request("POST", "/keys/projects/destroy", json=body)
