package mlflow.authz_test

import rego.v1

import data.mlflow.authz

admin := {"id": "root", "kind": "user", "roles": ["admin"], "scopes": ["admin", "read", "write"]}

alice := {"id": "alice", "kind": "user", "roles": [], "scopes": ["admin", "read", "write"]}

auditor := {"id": "audrey", "kind": "user", "roles": ["auditor"], "scopes": ["read"]}

request(subject, endpoint, access) := {
	"subject": subject,
	"action": {"endpoint": endpoint, "access": access, "method": "GET"},
	"resource": {"type": "unmapped"},
}

key_request(subject, endpoint, resource) := {
	"subject": subject,
	"action": {"endpoint": endpoint, "access": "manage", "method": "POST"},
	"resource": object.union({"type": "api_key"}, resource),
}

with_scopes(subject, scopes) := object.union(subject, {"scopes": scopes})

# ---------------------------------------------------------------- anonymous and defaults

test_anonymous_request_is_denied_with_a_reason if {
	result := authz.decision with input as {"action": {"endpoint": "mlflow.unmapped"}}
	result.allow == false
	result.reasons == {"the request has no authenticated subject"}
}

test_null_subject_is_anonymous if {
	result := authz.decision with input as {"subject": null}
	result.allow == false
	"the request has no authenticated subject" in result.reasons
}

test_decision_is_defined_for_an_empty_input if {
	result := authz.decision with input as {}
	result.allow == false
}

test_allowed_decision_has_no_reasons if {
	result := authz.decision with input as request(admin, "mlflow.unmapped", "write")
	result == {"allow": true, "reasons": set()}
}

# ---------------------------------------------------------------- administrators and scopes

test_admin_may_use_mlflow if {
	authz.allow with input as request(admin, "mlflow.unmapped", "delete")
}

test_admin_with_read_key_cannot_write if {
	result := authz.decision with input as request(with_scopes(admin, ["read"]), "mlflow.unmapped", "write")
	result.allow == false
	result.reasons == {"the credential's scopes (read) do not permit write access"}
}

test_write_scope_permits_read_and_delete_but_not_manage if {
	writer := with_scopes(admin, ["write"])
	authz.allow with input as request(writer, "mlflow.unmapped", "read")
	authz.allow with input as request(writer, "mlflow.unmapped", "delete")
	not authz.allow with input as request(writer, "mlflow-secure.users.create", "admin")
}

test_unknown_scope_permits_nothing if {
	not authz.allow with input as request(with_scopes(admin, ["superuser"]), "mlflow.unmapped", "read")
}

test_others_are_kept_out_of_mlflow_with_a_reason if {
	result := authz.decision with input as request(alice, "mlflow.unmapped", "read")
	result.allow == false
	"MLflow is open to administrators only until project permissions are configured" in result.reasons
}

# ---------------------------------------------------------------- defined for every input

test_fallback_reason_names_endpoint_and_subject if {
	result := authz.decision with input as request(alice, "other.thing", "read")
	result.reasons == {"no policy rule allows other.thing for alice"}
}

test_decision_is_defined_for_malformed_inputs if {
	every case in [
		{"subject": {"id": "alice"}},
		{"subject": {"id": "alice"}, "action": "mlflow.runs.get"},
		{"subject": {"id": "alice", "roles": "admin", "projects": "fraud"}, "action": {"endpoint": 7}},
		{"subject": "alice", "action": {"endpoint": "mlflow.runs.get", "access": "read"}},
		{"subject": {"id": "alice", "scopes": ["read"]}, "action": {"endpoint": "mlflow.runs.get", "access": "read"}},
		{"subject": {"id": "alice"}, "action": {"endpoint": "mlflow.runs.get", "access": "read"}, "resource": null},
		{"subject": {"id": "alice"}, "action": {"endpoint": "mlflow.runs.get", "access": "read"}, "resource": 3},
	] {
		result := authz.decision with input as case
		result.allow == false
		count(result.reasons) > 0
		every reason in result.reasons {
			is_string(reason)
		}
	}
	result := authz.decision with input as []
	result == {"allow": false, "reasons": {"the request has no authenticated subject"}}
}

test_fallback_reason_without_an_endpoint if {
	result := authz.decision with input as {"subject": {"id": "alice"}}
	result.reasons == {"no policy rule allows this request"}
}
