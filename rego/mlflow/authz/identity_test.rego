package mlflow.authz_test

import rego.v1

import data.mlflow.authz

# ---------------------------------------------------------------- identities

test_everyone_may_ask_who_they_are if {
	authz.allow with input as request(with_scopes(alice, ["read"]), "mlflow-secure.whoami", "read")
}

test_only_admins_manage_identities if {
	result := authz.decision with input as request(alice, "mlflow-secure.users.create", "admin")
	result.allow == false
	result.reasons == {"only administrators may manage identities"}
	authz.allow with input as request(admin, "mlflow-secure.users.create", "admin")
}

test_listing_users_is_for_admins_and_auditors_only if {
	authz.allow with input as request(auditor, "mlflow-secure.users.list", "read")
	authz.allow with input as request(admin, "mlflow-secure.users.list", "read")
	result := authz.decision with input as request(alice, "mlflow-secure.users.list", "read")
	result.allow == false
	result.reasons == {"only administrators and auditors may list identities"}
}

test_auditor_cannot_change_identities if {
	result := authz.decision with input as request(auditor, "mlflow-secure.teams.create", "admin")
	result.allow == false
	"only administrators may manage identities" in result.reasons
}

# ---------------------------------------------------------------- API keys

test_user_lists_and_revokes_own_keys_with_any_scope if {
	reader := with_scopes(alice, ["read"])
	authz.allow with input as key_request(reader, "mlflow-secure.keys.list", {"owner": "alice"})
	authz.allow with input as key_request(reader, "mlflow-secure.keys.revoke", {"owner": "alice"})
}

test_user_cannot_touch_someone_elses_keys if {
	result := authz.decision with input as key_request(alice, "mlflow-secure.keys.revoke", {"owner": "bob"})
	result.allow == false
	result.reasons == {"only administrators may manage other principals' API keys"}
}

test_owner_manages_keys_of_own_service_account if {
	resource := {"owner": "ci-bot", "owner_kind": "service", "owner_owner": "alice", "scopes": ["write"]}
	authz.allow with input as key_request(alice, "mlflow-secure.keys.create", resource)
}

test_owner_of_a_user_is_not_a_key_manager if {
	resource := {"owner": "bob", "owner_kind": "user", "owner_owner": "alice"}
	not authz.allow with input as key_request(alice, "mlflow-secure.keys.list", resource)
}

test_narrow_key_cannot_mint_keys if {
	result := authz.decision with input as key_request(
		with_scopes(alice, ["write"]),
		"mlflow-secure.keys.create",
		{"owner": "alice", "scopes": ["read"]},
	)
	result.allow == false
	result.reasons == {"minting API keys needs a password or OIDC login, or a key with the admin scope"}
}

test_new_key_never_exceeds_the_creating_credential if {
	result := authz.decision with input as key_request(
		with_scopes(alice, ["admin"]),
		"mlflow-secure.keys.create",
		{"owner": "alice", "scopes": ["write", "bogus"]},
	)
	result.allow == false
	result.reasons == {"a key cannot be given scopes that the credential creating it lacks"}
}

test_admin_manages_anyones_keys if {
	authz.allow with input as key_request(admin, "mlflow-secure.keys.rotate", {"owner": "bob", "scopes": ["read"]})
}

test_project_limited_key_mints_only_within_its_projects if {
	limited := object.union(alice, {"key_projects": ["fraud"]})
	within := {"owner": "alice", "scopes": ["read"], "projects": ["fraud"]}
	authz.allow with input as key_request(limited, "mlflow-secure.keys.create", within)
	beyond := {"owner": "alice", "scopes": ["read"], "projects": ["fraud", "churn"]}
	result := authz.decision with input as key_request(limited, "mlflow-secure.keys.create", beyond)
	result.allow == false
	result.reasons == {"a key cannot reach projects beyond those of the key creating it"}
	unlimited := {"owner": "alice", "scopes": ["read"], "projects": null}
	not authz.allow with input as key_request(limited, "mlflow-secure.keys.create", unlimited)
}

test_unlimited_credential_mints_limited_or_unlimited_keys if {
	unlimited := object.union(alice, {"key_projects": null})
	authz.allow with input as key_request(unlimited, "mlflow-secure.keys.create", {"owner": "alice", "projects": null})
	authz.allow with input as key_request(unlimited, "mlflow-secure.keys.create", {"owner": "alice", "projects": ["x"]})
}

# ---------------------------------------------------------------- audit trail and lineage

test_auditor_reads_audit_trail_and_lineage if {
	authz.allow with input as request(auditor, "mlflow-secure.audit.events.list", "read")
	authz.allow with input as request(auditor, "mlflow-secure.lineage.get", "read")
	authz.allow with input as request(admin, "mlflow-secure.audit.export", "read")
}

test_auditor_never_changes_the_audit_trail if {
	result := authz.decision with input as request(auditor, "mlflow-secure.audit.purge", "admin")
	result == {"allow": false, "reasons": {"auditors may read the audit trail and lineage but not change them"}}
}

test_others_do_not_read_the_audit_trail if {
	result := authz.decision with input as request(alice, "mlflow-secure.lineage.get", "read")
	result == {"allow": false, "reasons": {"only administrators and auditors may read the audit trail and lineage"}}
	not authz.allow with input as request(with_scopes(auditor, ["bogus"]), "mlflow-secure.audit.events.list", "read")
}
