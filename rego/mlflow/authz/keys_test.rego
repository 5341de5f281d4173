package mlflow.authz_test

import rego.v1

import data.mlflow.authz

artefact_run(experiment, id) := object.union(experiment, {
	"type": "run",
	"id": id,
	"artefact": concat("/", ["runs", id, "artifacts", "model.pkl"]),
})

fraud_run := artefact_run(fraud_exp, "r1")

anns_run := artefact_run(anns_exp, "r3")

data_key_request(subject, verb, access, resource) := mlflow(subject, concat(".", ["mlflow-secure.artifact_keys", verb]), access, resource)

create_key(subject, resource) := data_key_request(subject, "create", "write", resource)

unwrap_key(subject, resource) := data_key_request(subject, "unwrap", "read", object.union(resource, {"key_id": "dk-1"}))

project_keys(subject, verb, access, project) := mlflow(
	subject,
	concat(".", ["mlflow-secure.project_keys", verb]),
	access,
	{"type": "project_key", "id": project, "project": project},
)

test_an_editor_creates_and_unwraps_data_keys_of_their_project if {
	allowed(create_key(ann, fraud_run))
	allowed(unwrap_key(ann, fraud_run))
}

test_a_viewer_unwraps_but_does_not_create if {
	allowed(unwrap_key(vic, fraud_run))
	denied(create_key(vic, fraud_run), {"creating a data key of this run needs write access to it (project fraud)"})
}

test_another_team_neither_creates_nor_unwraps if {
	denied(create_key(ben, fraud_run), {"creating a data key of this run needs write access to it (project fraud)"})
	denied(unwrap_key(ben, fraud_run), {"unwrapping a data key of this run needs read access to it (project fraud)"})
}

test_clearance_below_the_classification_unwraps_nothing if {
	internal_ann := object.union(ann, {"clearance": "internal"})
	not authz.allow with input as unwrap_key(internal_ann, fraud_run)
}

test_a_read_only_key_creates_no_data_key if {
	denied(create_key(scoped(ann, ["read"]), fraud_run), {
		"creating a data key of this run needs write access to it (project fraud)",
		"the credential's scopes (read) do not permit write access",
	})
}

test_a_key_limited_to_other_projects_unwraps_nothing_even_for_an_administrator if {
	not authz.allow with input as unwrap_key(limited(ann, ["churn"]), fraud_run)
	not authz.allow with input as unwrap_key(limited(root, ["churn"]), fraud_run)
	allowed(unwrap_key(limited(root, ["fraud"]), fraud_run))
}

test_outside_any_project_the_owner_decides if {
	allowed(unwrap_key(ann, anns_run))
	denied(unwrap_key(ben, anns_run), {"unwrapping a data key of this run needs read access to it (no project)"})
}

test_maintainers_rotate_and_retire_and_see_their_project_keys if {
	allowed(project_keys(mia, "rotate", "manage", "fraud"))
	allowed(project_keys(mia, "retire", "manage", "fraud"))
	allowed(project_keys(mia, "get", "read", "fraud"))
	denied(project_keys(mia, "rotate", "manage", "churn"), {"only maintainers of project churn and administrators may change its keys"})
}

test_editors_do_not_manage_project_keys if {
	denied(project_keys(ann, "rotate", "manage", "fraud"), {"only maintainers of project fraud and administrators may change its keys"})
	denied(project_keys(ann, "get", "read", "fraud"), {"only maintainers of project fraud and administrators may see its keys"})
}

test_auditors_see_project_keys_and_change_nothing if {
	allowed(project_keys(audrey, "get", "read", "fraud"))
	not authz.allow with input as project_keys(audrey, "rotate", "manage", "fraud")
}

test_only_administrators_destroy_a_projects_keys if {
	allowed(project_keys(root, "destroy", "admin", "fraud"))
	denied(project_keys(mia, "destroy", "admin", "fraud"), {"only administrators may destroy a project's keys"})
}
