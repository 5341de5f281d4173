# METADATA
# title: mlflow-secure authorisation entry point
# description: |
#   The server asks for data.mlflow.authz.decision on every request; it must be defined for
#   every input: {"allow": bool, "reasons": [string]} (no reasons on an allow). Listings are
#   narrowed with data.mlflow.authz.filter (filter.rego). The input contract is documented
#   in docs/policy-authoring.md. The package spans several files, one per concern:
#     authz.rego           this entry point: subject basics, scopes, administrators, reasons
#     identity.rego        the plugin's own API: whoami, identities, API keys, audit, lineage
#     keys.rego            the key service: data keys of encrypted artefacts, project keys
#     resources.rego       MLflow resources: project roles, ownership, key projects, can_read
#     classification.rego  classifications and clearances
#     tags.rego            changes to the project and classification tags
#     uris.rego            URIs a request carries (artifact locations, sources, webhooks)
#     filter.rego          batched read filtering of listings
#     config.rego          operator settings (data.json defaults and overrides)
package mlflow.authz

import rego.v1

# Deny by default: a request is allowed only when a rule says so.
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

# ---------------------------------------------------------------- administrators

# Administrators may do anything their credential's scopes permit. Mapped MLflow resource
# requests go through can_read / can_change (resources.rego), which grant administrators
# the same; a project-limited key still stays within its projects, and an unsafe URI or an
# invalid classification is refused even to an administrator.
allow if {
	authenticated
	is_admin
	not resource_request
	scope_permits(input.action.access)
	within_key_projects_for_request
	count(request_problems) == 0
}

within_key_projects_for_request if {
	not mlflow_endpoint
	not key_service_endpoint
}

within_key_projects_for_request if within_key_projects(input.resource)

# Problems with what a request asks for, whoever asks (URIs, tag changes).
request_problems := uri_problems | tag_problems

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

fallback_reason := "the request has no authenticated subject" if {
	not authenticated
} else := msg if {
	msg := sprintf("no policy rule allows %v for %v", [input.action.endpoint, input.subject.id])
} else := "no policy rule allows this request"

# The credential's scopes are the first limit, for administrators and MLflow requests alike.
scope_checked if {
	authenticated
	is_admin
}

scope_checked if resource_request

specific_reasons contains msg if {
	scope_checked
	not scope_permits(input.action.access)
	msg := sprintf(
		"the credential's scopes (%s) do not permit %v access",
		[concat(", ", sort(input.subject.scopes)), input.action.access],
	)
}

specific_reasons contains msg if {
	authenticated
	some msg in request_problems
}
