"""Two teams, two projects and an auditor on a real server: the world the e2e tests share.

alice is in team-a (editor of project fraud, cleared for confidential), bob in team-b (editor
of project churn, cleared for restricted), audrey an auditor; each has a read/write API key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.support import servers

API = "/api/2.0/mlflow-secure/"


@dataclass
class Actor:
    server: servers.Server
    key: str

    def call(self, method: str, path: str, prefix: str = "/api", **kwargs: Any) -> Any:
        return self.server.api(method, prefix + path, self.key, **kwargs)

    def search(self, path: str, prefix: str = "/api", **params: Any) -> Any:
        response = self.call("GET", path, prefix=prefix, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def graphql(self, query: str, variables: Any = None, **extra: Any) -> Any:
        body = {"query": query, "variables": variables, **extra}
        return self.server.api("POST", "/graphql", self.key, json=body)


def make_key(server: servers.Server, admin: str, principal: str, scopes=("read", "write")) -> str:
    response = server.api(
        "POST", API + "keys/create", admin, json={"principal": principal, "scopes": list(scopes)}
    )
    assert response.status_code == 200, response.text
    return response.json()["key"]


def populate(server: servers.Server, bob_clearance: str = "restricted") -> dict[str, Actor]:
    """Create the users, teams and projects; the actors, by name (admin included)."""
    admin = server.admin_key()

    def setup(path: str, body: dict[str, Any]) -> None:
        response = server.api("POST", API + path, admin, json=body)
        assert response.status_code == 200, (path, response.text)

    setup("users/create", {"name": "alice", "clearance": "confidential"})
    setup("users/create", {"name": "bob", "clearance": bob_clearance})
    setup("users/create", {"name": "audrey", "roles": ["auditor"], "clearance": "restricted"})
    for team, member, project in (("team-a", "alice", "fraud"), ("team-b", "bob", "churn")):
        setup("teams/create", {"name": team})
        setup("teams/add-member", {"team": team, "principal": member})
        setup("projects/create", {"name": project})
        setup("projects/set-member", {"project": project, "role": "editor", "team": team})
    actors = {
        name: Actor(server, make_key(server, admin, name)) for name in ("alice", "bob", "audrey")
    }
    actors["admin"] = Actor(server, admin)
    return actors
