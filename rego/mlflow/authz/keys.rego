# The key service: data keys of encrypted artefacts, and project keys.
#
# A data key is decided like the artefact it opens (the run or logged model the server
# resolved, with its experiment's project and classification): creating one needs write
# access to it, unwrapping one read access (can_change / can_read in resources.rego: project
# role, clearance, the credential's scopes and projects). Project maintainers rotate and
# retire their project's keys and see their state, auditors see it too; destroying a
# project's keys (crypto-shredding) is for administrators alone (authz.rego). Endpoints are
# mlflow-secure.artifact_keys.<verb> and mlflow-secure.project_keys.<verb>.
package mlflow.authz

import rego.v1

key_service_endpoint if startswith(input.action.endpoint, "mlflow-secure.artifact_keys.")

key_service_endpoint if project_key_endpoint

project_key_endpoint if startswith(input.action.endpoint, "mlflow-secure.project_keys.")

allow if {
	input.action.endpoint == "mlflow-secure.artifact_keys.create"
	can_change(input.resource, "write")
}

allow if {
	input.action.endpoint == "mlflow-secure.artifact_keys.unwrap"
	can_read(input.resource)
}

# Maintainers of the project rotate and retire its keys.
allow if {
	input.action.endpoint in {"mlflow-secure.project_keys.rotate", "mlflow-secure.project_keys.retire"}
	authenticated
	scope_permits("manage")
	within_key_projects(input.resource)
	maintains(input.resource.project)
}

# Maintainers and auditors see a project's key versions (never key material).
allow if {
	input.action.endpoint == "mlflow-secure.project_keys.get"
	authenticated
	scope_permits("read")
	within_key_projects(input.resource)
	sees_project_keys(input.resource.project)
}

sees_project_keys(project) if maintains(project)

sees_project_keys(_) if is_auditor

# ---------------------------------------------------------------- why not

specific_reasons contains msg if {
	input.action.endpoint in {"mlflow-secure.artifact_keys.create", "mlflow-secure.artifact_keys.unwrap"}
	authenticated
	msg := sprintf(
		"%s a data key of this %s needs %s access to it (%s)",
		[key_verb[input.action.endpoint], resource_noun, input.action.access, artefact_place],
	)
}

key_verb := {
	"mlflow-secure.artifact_keys.create": "creating",
	"mlflow-secure.artifact_keys.unwrap": "unwrapping",
}

artefact_place := sprintf("project %s", [project_of(input.resource)]) if {
	project_of(input.resource)
} else := "no project"

specific_reasons contains msg if {
	project_key_endpoint
	authenticated
	not input.action.endpoint == "mlflow-secure.project_keys.destroy"
	msg := sprintf("only maintainers of project %v and administrators may %s its keys", [input.resource.project, project_key_verb])
}

project_key_verb := "see" if input.action.endpoint == "mlflow-secure.project_keys.get"

else := "change"

specific_reasons contains "only administrators may destroy a project's keys" if {
	input.action.endpoint == "mlflow-secure.project_keys.destroy"
	authenticated
	not is_admin
}

# A credential's scopes are named as the reason, as for MLflow requests.
scope_checked if {
	authenticated
	key_service_endpoint
}
