# The plugin's own API.
#
# whoami for everyone; identities for administrators (auditors may list them); people
# manage their own API keys and their service accounts' keys; auditors read the audit
# trail and lineage. Endpoints are named mlflow-secure.<family>.<verb>.
package mlflow.authz

import rego.v1

allow if {
	authenticated
	input.action.endpoint == "mlflow-secure.whoami"
}

allow if {
	authenticated
	is_auditor
	input.action.endpoint in auditor_readable
	scope_permits("read")
}

auditor_readable := {
	"mlflow-secure.users.get",
	"mlflow-secure.users.list",
	"mlflow-secure.service_accounts.list",
	"mlflow-secure.teams.list",
	"mlflow-secure.projects.list",
}

# ---------------------------------------------------------------- audit trail and lineage

# Auditors read the audit trail and lineage records; they never change them.
allow if {
	authenticated
	is_auditor
	audit_endpoint
	input.action.access == "read"
	scope_permits("read")
}

audit_endpoint if startswith(input.action.endpoint, "mlflow-secure.audit.")

audit_endpoint if startswith(input.action.endpoint, "mlflow-secure.lineage.")

# ---------------------------------------------------------------- API keys

# People manage their own keys and those of the service accounts they own.
allow if {
	authenticated
	own_key_endpoint
	manages_key_owner
	scope_permits(own_key_endpoints[input.action.endpoint])
	requested_scopes_held
	requested_projects_held
}

own_key_endpoints := {
	"mlflow-secure.keys.list": "read",
	"mlflow-secure.keys.revoke": "read", # revoking only ever reduces power
	# Minting keys needs a password, OIDC or an admin-scoped key: a leaked narrower key
	# must not be able to mint successors that survive its revocation.
	"mlflow-secure.keys.create": "manage",
	"mlflow-secure.keys.rotate": "manage",
}

own_key_endpoint if own_key_endpoints[input.action.endpoint]

manages_key_owner if input.resource.owner == input.subject.id

manages_key_owner if {
	input.resource.owner_kind == "service"
	input.resource.owner_owner == input.subject.id
}

# A new key never gets a scope the credential creating it lacks.
requested_scopes_held if {
	every scope in object.get(input.resource, "scopes", []) {
		scope_permits(scope)
	}
}

# A key limited to some projects never mints a key beyond them (nor an unlimited one).
key_projects := object.get(input.subject, "key_projects", null)

requested_projects_held if key_projects == null

requested_projects_held if {
	key_projects != null
	requested := object.get(input.resource, "projects", null)
	requested != null
	every project in requested {
		project in key_projects
	}
}

# ---------------------------------------------------------------- why not

specific_reasons contains "only administrators may manage other principals' API keys" if {
	authenticated
	own_key_endpoint
	not is_admin
	not manages_key_owner
}

specific_reasons contains msg if {
	authenticated
	own_key_endpoint
	manages_key_owner
	not scope_permits(own_key_endpoints[input.action.endpoint])
	msg := "minting API keys needs a password or OIDC login, or a key with the admin scope"
}

specific_reasons contains "a key cannot reach projects beyond those of the key creating it" if {
	authenticated
	own_key_endpoint
	manages_key_owner
	not requested_projects_held
}

specific_reasons contains "a key cannot be given scopes that the credential creating it lacks" if {
	authenticated
	own_key_endpoint
	manages_key_owner
	not requested_scopes_held
}

specific_reasons contains "only administrators may manage identities" if {
	authenticated
	not is_admin
	startswith(input.action.endpoint, "mlflow-secure.")
	not own_key_endpoint
	not key_service_endpoint
	not audit_endpoint
	not input.action.endpoint in auditor_readable
}

specific_reasons contains "only administrators and auditors may list identities" if {
	authenticated
	not is_admin
	not is_auditor
	input.action.endpoint in auditor_readable
}

specific_reasons contains "only administrators and auditors may read the audit trail and lineage" if {
	authenticated
	not is_admin
	not is_auditor
	audit_endpoint
}

specific_reasons contains "auditors may read the audit trail and lineage but not change them" if {
	authenticated
	not is_admin
	is_auditor
	audit_endpoint
	input.action.access != "read"
}
