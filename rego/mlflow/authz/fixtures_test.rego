# Shared test fixtures for MLflow resource requests: people, resources, requests.
package mlflow.authz_test

import rego.v1

import data.mlflow.authz

all_scopes := ["admin", "read", "write"]

person(id, projects, clearance) := {
	"id": id,
	"kind": "user",
	"roles": [],
	"teams": [],
	"projects": projects,
	"clearance": clearance,
	"scopes": all_scopes,
	"key_projects": null,
	"auth": "password",
}

via_team(name, role, team) := {"name": name, "role": role, "via": concat(":", ["team", team])}

direct(name, role) := {"name": name, "role": role, "via": "direct"}

# Team A (fraud) and team B (churn), both editors of their own project.
ann := person("ann", [via_team("fraud", "editor", "fraud-team")], "confidential")

ben := person("ben", [via_team("churn", "editor", "churn-team")], "confidential")

# A direct maintainer of fraud who is also a viewer through a team: the highest role wins.
mia := person("mia", [via_team("fraud", "viewer", "fraud-team"), direct("fraud", "maintainer")], "restricted")

vic := person("vic", [direct("fraud", "viewer")], "restricted")

root := object.union(person("root", [], "restricted"), {"roles": ["admin"]})

audrey := object.union(person("audrey", [], "public"), {"roles": ["auditor"]})

limited(subject, projects) := object.union(subject, {"key_projects": projects, "auth": "api_key"})

scoped(subject, scopes) := object.union(subject, {"scopes": scopes, "auth": "api_key"})

experiment(id, project, classification, owner) := {
	"type": "experiment",
	"id": id,
	"experiment_id": id,
	"project": project,
	"classification": classification,
	"owner": owner,
	"tags": {},
}

fraud_exp := experiment("1", "fraud", "confidential", "bob")

churn_exp := experiment("2", "churn", "internal", "bob")

# An experiment outside any project, owned by ann.
anns_exp := experiment("3", null, null, "ann")

mlflow(subject, endpoint, access, resource) := {
	"subject": subject,
	"action": {"endpoint": endpoint, "access": access, "method": "POST"},
	"resource": resource,
	"request": {"path": "/api/2.0/mlflow/x", "client_ip": "10.0.0.5", "tls": true},
}

read(subject, resource) := mlflow(subject, "mlflow.experiments.get", "read", resource)

write(subject, resource) := mlflow(subject, "mlflow.experiments.update", "write", resource)

# The tests pin the bundled defaults: an operator's overrides (data.mlflow.authz.overrides)
# do not change what they expect. A failing test prints the decision it got.
allowed(request) if allowed_with(request, {})

# Denied with exactly these reasons.
denied(request, reasons) if denied_with(request, {}, reasons)

# The same, with these operator overrides.
allowed_with(request, overrides) if {
	result := authz.decision with input as request with data.mlflow.authz.overrides as overrides
	print("decision:", result)
	result == {"allow": true, "reasons": set()}
}

denied_with(request, overrides, reasons) if {
	result := authz.decision with input as request with data.mlflow.authz.overrides as overrides
	print("decision:", result)
	result == {"allow": false, "reasons": reasons}
}
