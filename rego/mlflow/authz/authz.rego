# METADATA
# title: mlflow-secure authorisation entry point
# description: |
#   The server asks for data.mlflow.authz.decision on every authenticated request.
#   It must be defined for every input: {"allow": bool, "reasons": [string]}.
#   The input contract is documented in docs/policy-authoring.md.
#   Until project permissions arrive, MLflow itself is open to administrators only;
#   everyone may see who they are and manage their own API keys.
package mlflow.authz

import rego.v1

# Deny by default: a request is allowed only when a rule below says so.
default allow := false

decision := {"allow": allow, "reasons": deny_reasons}

authenticated if input.subject.id

is_admin if "admin" in input.subject.roles

is_auditor if "auditor" in input.subject.roles

# ---------------------------------------------------------------- what credentials permit

# An API key's scopes narrow what its principal may do; passwords and OIDC carry all scopes.
scopes_for_access := {
	"read": {"read", "write", "admin"},
	"write": {"write", "admin"},
	"delete": {"write", "admin"},
	"manage": {"admin"},
	"admin": {"admin"},
}

scope_permits(access) if {
	some scope in input.subject.scopes
	scope in scopes_for_access[access]
}

# ---------------------------------------------------------------- rules that allow

allow if {
	authenticated
	is_admin
	scope_permits(input.action.access)
}

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

deny_reasons := set() if allow

deny_reasons := specific_reasons if {
	not allow
	count(specific_reasons) > 0
}

deny_reasons := {fallback_reason} if {
	not allow
	count(specific_reasons) == 0
}

fallback_reason := "the request has no authenticated subject" if not authenticated

fallback_reason := sprintf("no policy rule allows %s for %s", [input.action.endpoint, input.subject.id]) if {
	authenticated
}

specific_reasons contains msg if {
	authenticated
	is_admin
	not scope_permits(input.action.access)
	msg := sprintf(
		"the credential's scopes (%s) do not permit %s access",
		[concat(", ", sort(input.subject.scopes)), input.action.access],
	)
}

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
	not input.action.endpoint in auditor_readable
}

specific_reasons contains "only administrators and auditors may list identities" if {
	authenticated
	not is_admin
	not is_auditor
	input.action.endpoint in auditor_readable
}

specific_reasons contains "MLflow is open to administrators only until project permissions are configured" if {
	authenticated
	not is_admin
	startswith(input.action.endpoint, "mlflow.")
}
