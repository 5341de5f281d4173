package mlflow.authz_test

import rego.v1

import data.mlflow.authz

# ---------------------------------------------------------------- projects: team A vs team B

test_team_a_reads_and_changes_its_project if {
	allowed(read(ann, fraud_exp))
	allowed(write(ann, fraud_exp))
	allowed(mlflow(ann, "mlflow.runs.delete", "delete", object.union(fraud_exp, {"type": "run", "id": "r1"})))
}

test_team_b_has_no_access_to_team_a_project if {
	denied(read(ben, fraud_exp), {"you have no role in project fraud"})
	denied(write(ben, fraud_exp), {"you have no role in project fraud"})
	allowed(read(ben, churn_exp))
	denied(read(ann, churn_exp), {"you have no role in project churn"})
}

test_viewer_reads_but_does_not_write if {
	allowed(read(vic, fraud_exp))
	denied(write(vic, fraud_exp), {"your role in project fraud (viewer) does not permit write access"})
	denied(
		mlflow(vic, "mlflow.experiments.delete", "delete", fraud_exp),
		{"your role in project fraud (viewer) does not permit delete access"},
	)
}

test_editor_does_not_manage if {
	denied(
		mlflow(ann, "mlflow.webhooks.update", "manage", fraud_exp),
		{"your role in project fraud (editor) does not permit manage access"},
	)
}

test_highest_role_wins if {
	# mia is a viewer of fraud through a team and a maintainer directly.
	allowed(mlflow(mia, "mlflow.webhooks.update", "manage", fraud_exp))
	allowed(write(mia, fraud_exp))
	authz.project_role == {"fraud": "maintainer"} with input as read(mia, fraud_exp)
}

test_unknown_project_roles_grant_nothing if {
	owner := person("olga", [direct("fraud", "owner")], "restricted")
	denied(read(owner, fraud_exp), {"you have no role in project fraud"})
}

test_project_admin_access_is_for_administrators if {
	denied(
		mlflow(mia, "mlflow.experiments.purge", "admin", fraud_exp),
		{"your role in project fraud (maintainer) does not permit admin access"},
	)
	allowed(mlflow(root, "mlflow.experiments.purge", "admin", fraud_exp))
}

test_resources_under_an_experiment_follow_it if {
	run := object.union(fraud_exp, {"type": "registered_model", "id": "fraud-model"})
	denied(read(ben, run), {"you have no role in project fraud"})
	denied(write(vic, run), {"your role in project fraud (viewer) does not permit write access"})
	allowed(read(vic, run))
}

# ---------------------------------------------------------------- administrators and auditors

test_admin_may_do_anything_the_scopes_permit if {
	allowed(mlflow(root, "mlflow.experiments.delete", "delete", fraud_exp))
	allowed(write(root, anns_exp))
	allowed(read(root, experiment("9", "fraud", "restricted", null)))
	denied(
		write(scoped(root, ["read"]), fraud_exp),
		{"the credential's scopes (read) do not permit write access"},
	)
}

test_auditor_reads_everything if {
	allowed(read(audrey, fraud_exp))
	allowed(read(audrey, experiment("9", "secret-project", "restricted", null)))
	allowed(read(audrey, anns_exp))
}

test_auditor_never_writes if {
	denied(write(audrey, fraud_exp), {"auditors have read-only access to MLflow"})
	editor_auditor := object.union(ann, {"roles": ["auditor"]})
	denied(write(editor_auditor, fraud_exp), {"auditors have read-only access to MLflow"})
	denied(
		mlflow(audrey, "mlflow.experiments.create", "write", experiment(null, null, null, null)),
		{"auditors have read-only access to MLflow"},
	)
}

test_auditor_key_still_needs_the_read_scope if {
	denied(read(scoped(audrey, []), fraud_exp), {"the credential's scopes () do not permit read access"})
}

# ---------------------------------------------------------------- scopes

test_a_read_key_reads_but_does_not_write if {
	reader := scoped(ann, ["read"])
	allowed(read(reader, fraud_exp))
	denied(write(reader, fraud_exp), {"the credential's scopes (read) do not permit write access"})
}

# ---------------------------------------------------------------- key projects

test_project_limited_key_stays_in_its_projects if {
	both := person("bea", [direct("fraud", "editor"), direct("churn", "editor")], "restricted")
	key := limited(both, ["fraud"])
	allowed(read(key, fraud_exp))
	allowed(write(key, fraud_exp))
	denied(read(key, churn_exp), {"this API key is limited to projects fraud; this experiment belongs to project churn"})
	allowed(read(both, churn_exp))
}

test_project_limited_key_cannot_reach_resources_outside_projects if {
	denied(
		read(limited(ann, ["fraud"]), anns_exp),
		{"this API key is limited to projects fraud; this experiment belongs to no project"},
	)
	allowed(read(ann, anns_exp))
	denied(
		read(limited(ann, []), fraud_exp),
		{"this API key is limited to no project; this experiment belongs to project fraud"},
	)
}

test_project_limited_key_narrows_administrators_too if {
	key := limited(root, ["fraud"])
	allowed(read(key, fraud_exp))
	denied(read(key, churn_exp), {"this API key is limited to projects fraud; this experiment belongs to project churn"})
	result := authz.decision with input as request(key, "mlflow.unmapped", "read")
	result == {"allow": false, "reasons": {"this API key is limited to projects fraud; this unmapped belongs to no project"}}
}

test_project_limited_key_may_list if {
	allowed(mlflow(limited(ann, ["fraud"]), "mlflow.experiments.search", "read", {"type": "none"}))
}

# ---------------------------------------------------------------- outside any project

test_owner_uses_an_experiment_outside_any_project if {
	allowed(read(ann, anns_exp))
	allowed(write(ann, anns_exp))
	allowed(mlflow(ann, "mlflow.experiments.delete", "delete", anns_exp))
}

test_others_do_not_see_an_experiment_outside_any_project if {
	reason := {"this experiment belongs to no project; only its owner and administrators may use it"}
	denied(read(ben, anns_exp), reason)
	denied(write(mia, anns_exp), reason)
	denied(read(ben, experiment("4", "", null, null)), reason)
	allowed(read(root, anns_exp))
	allowed(read(audrey, anns_exp))
}

test_owner_does_not_manage_outside_any_project if {
	denied(
		mlflow(ann, "mlflow.webhooks.update", "manage", anns_exp),
		{"manage access to resources outside any project is for administrators only"},
	)
}

test_owner_still_needs_clearance if {
	secret := experiment("5", null, "restricted", "ann")
	denied(read(ann, secret), {"your clearance (confidential) is below this experiment's classification (restricted)"})
}

# ---------------------------------------------------------------- creating

# A create request: the resource describes what would be created, from the requested tags.
requested(project, classification) := object.union(
	experiment(null, project, classification, null),
	{"new_tags": {key: value |
		some key, value in {"mlflow.secure.project": project, "mlflow.secure.classification": classification}
		value != null
	}},
)

create(subject, resource) := mlflow(subject, "mlflow.experiments.create", "write", resource)

test_creating_in_a_project_needs_the_editor_role if {
	allowed(create(ann, requested("fraud", null)))
	allowed(create(ann, requested("fraud", "confidential")))
	denied(create(vic, requested("fraud", null)), {"your role in project fraud (viewer) does not permit write access"})
	denied(create(ben, requested("fraud", null)), {"you have no role in project fraud"})
}

test_anyone_creates_an_experiment_outside_any_project if {
	allowed(create(ben, requested(null, null)))
	allowed(create(person("newbie", [], "internal"), requested(null, null)))
	model := object.union(requested(null, null), {"type": "registered_model"})
	allowed(mlflow(ben, "mlflow.registered_models.create", "write", model))
}

test_creating_outside_any_project_needs_write_scope_and_clearance if {
	denied(
		create(scoped(ben, ["read"]), requested(null, null)),
		{"the credential's scopes (read) do not permit write access"},
	)
	denied(
		create(person("pat", [], "public"), requested(null, null)),
		{"your clearance (public) is below this experiment's classification (internal)"},
	)
	denied(
		create(limited(ann, ["fraud"]), requested(null, null)),
		{"this API key is limited to projects fraud; this experiment belongs to no project"},
	)
}

run_in(exp) := object.union(exp, {"type": "run", "id": null})

test_creating_a_run_needs_access_to_its_experiment if {
	allowed(mlflow(ann, "mlflow.runs.create", "write", run_in(anns_exp)))
	denied(
		mlflow(ben, "mlflow.runs.create", "write", run_in(anns_exp)),
		{"this run belongs to no project; only its owner and administrators may use it"},
	)
	allowed(mlflow(ann, "mlflow.runs.create", "write", run_in(fraud_exp)))
}

# ---------------------------------------------------------------- listings and the server

test_everyone_authenticated_searches_and_reads_server_information if {
	allowed(mlflow(ben, "mlflow.experiments.search", "read", {"type": "none"}))
	allowed(mlflow(person("pat", [], "public"), "mlflow.server.info", "read", {"type": "server"}))
}

test_only_administrators_change_the_server if {
	denied(
		mlflow(ann, "mlflow.gateway.secrets.create", "write", {"type": "server"}),
		{"only administrators may change server-wide resources and listings"},
	)
	allowed(mlflow(root, "mlflow.gateway.secrets.create", "write", {"type": "server"}))
}

test_no_anonymous_access_even_to_public_resources if {
	public := experiment("6", "fraud", "public", null)
	denied(mlflow(null, "mlflow.experiments.get", "read", public), {"the request has no authenticated subject"})
}

test_a_resource_without_a_type_is_a_resource if {
	denied(read(ben, {"id": "x", "project": "fraud"}), {"only administrators may use this resource"})
	denied(read(ben, {"id": "x"}), {"only administrators may use this resource"})
}

# ---------------------------------------------------------------- public routes and listings

test_public_routes_need_only_authentication if {
	ui := {"type": "ui", "id": null}
	allowed(mlflow(ben, "mlflow.ui.index", "public", ui))
	allowed(mlflow(limited(scoped(ben, ["read"]), []), "mlflow.ui.static", "public", ui))
	allowed(mlflow(audrey, "mlflow.server.health", "public", {"type": "none"}))
	denied(mlflow(null, "mlflow.ui.index", "public", ui), {"the request has no authenticated subject"})
}

test_listings_are_read_by_everyone_and_filtered_afterwards if {
	listing := {"type": "experiment", "listing": true}
	allowed(mlflow(ben, "mlflow.experiments.search", "read", listing))
	allowed(mlflow(limited(ben, ["churn"]), "mlflow.traces.search", "read", listing))
	denied(
		mlflow(scoped(ben, []), "mlflow.experiments.search", "read", listing),
		{"the credential's scopes () do not permit read access"},
	)
	denied(
		mlflow(ben, "mlflow.experiments.bulk", "write", listing),
		{"only administrators may change server-wide resources and listings"},
	)
}

# ---------------------------------------------------------------- what the server could not place

test_server_wide_kinds_are_for_administrators if {
	mcp := {"type": "mcp", "id": "tools", "project": "fraud", "owner": "ann", "tags": {}}
	denied(mlflow(ann, "mlflow.mcp.update_endpoint", "write", mcp), {"only administrators may use this mcp"})
	denied(read(ann, object.union(mcp, {"type": "gateway"})), {"only administrators may use this gateway"})
	allowed(read(audrey, mcp))
	allowed(mlflow(root, "mlflow.mcp.update_endpoint", "write", mcp))
}

test_ownership_counts_only_when_read_from_the_store if {
	# What the server describes from a request (creating) names the caller as owner.
	described := {"type": "experiment", "id": null, "project": null, "owner": "ann", "creating": true}
	reason := {"the server could not place this experiment; only administrators may use it"}
	denied(mlflow(ann, "mlflow.runs.create", "write", described), reason)
	denied(mlflow(ann, "mlflow.runs.create", "write", object.union(described, {"project": "fraud"})), reason)
	allowed(mlflow(root, "mlflow.runs.create", "write", described))
}

test_a_project_counts_only_when_read_from_the_store if {
	unplaced := object.union(fraud_exp, {"experiment_id": ""})
	reason := {"the server could not place this experiment; only administrators may use it"}
	denied(read(ann, unplaced), reason)
	denied(read(ann, object.union(fraud_exp, {"experiment_id": null})), reason)
	allowed(read(ann, object.union(fraud_exp, {"type": "registered_model", "experiment_id": null})))
}

test_a_missing_resource_is_answered_like_someone_elses if {
	missing := {"type": "run", "id": "nope", "missing": true, "project": null, "classification": null, "owner": null, "tags": {}}
	hidden := object.union(anns_exp, {"type": "run", "id": "r9"})
	denied(read(ben, missing), {"this run belongs to no project; only its owner and administrators may use it"})
	denied(read(ben, hidden), {"this run belongs to no project; only its owner and administrators may use it"})
}

test_unfiltered_listings_are_for_administrators_and_auditors if {
	unfiltered := {"type": "experiment", "listing": true, "filtered": false}
	graphql := {"type": "server", "listing": true, "filtered": false}
	some resource in [unfiltered, graphql]
	denied := authz.decision with input as {
		"subject": {"id": "zed", "kind": "user", "roles": [], "teams": [], "projects": [], "clearance": "restricted", "scopes": ["read", "write", "admin"], "key_projects": null},
		"action": {"endpoint": "mlflow.experiments.search", "access": "read", "method": "GET"},
		"resource": resource,
	}
	denied.allow == false
	sprintf("listing %s is open to administrators and auditors only until its results are filtered", [resource.type]) in denied.reasons
	authz.allow with input as {
		"subject": {"id": "aud", "kind": "user", "roles": ["auditor"], "teams": [], "projects": [], "clearance": "restricted", "scopes": ["read"], "key_projects": null},
		"action": {"endpoint": "mlflow.experiments.search", "access": "read", "method": "GET"},
		"resource": resource,
	}
}
