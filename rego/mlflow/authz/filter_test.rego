package mlflow.authz_test

import rego.v1

import data.mlflow.authz

# fay edits fraud through a team, views churn directly, is cleared for confidential.
fay := person("fay", [via_team("fraud", "editor", "fraud-team"), direct("churn", "viewer")], "confidential")

generated_projects := ["fraud", "churn", "ads", null, null]

generated_levels := [null, "public", "internal", "confidential", "restricted", "internal", "Secret"]

generated_owners := ["fay", "bob", null]

generated(i) := {
	"type": "experiment",
	"id": sprintf("%d", [i]),
	"experiment_id": sprintf("%d", [i]),
	"project": generated_projects[i % 5],
	"classification": generated_levels[i % 7],
	"owner": generated_owners[i % 3],
}

resources := [generated(i) | some i in numbers.range(1, 2000)]

listing(subject, items) := {
	"subject": subject,
	"action": {"endpoint": "mlflow.experiments.search", "access": "read", "method": "POST"},
	"resources": items,
}

# The filter's answer under the bundled defaults (whatever an operator overrides).
filtered_ids(request) := ids if {
	ids := authz.filter with input as request with data.mlflow.authz.overrides as {}
}

# What fay may read, stated independently of the policy.
fay_levels := {null, "public", "internal", "confidential"}

fay_sees(r) if r.project in {"fraud", "churn"}

fay_sees(r) if {
	r.project == null
	r.owner == "fay"
}

test_filter_returns_exactly_the_readable_ids if {
	expected := {r.id | some r in resources; r.classification in fay_levels; fay_sees(r)}
	count(expected) == 763
	result := filtered_ids(listing(fay, resources))
	result == expected
	"1" in result # fraud, public
	not "2" in result # ads
	"3" in result # no project, owned by fay, confidential
	not "4" in result # no project, owned by bob
	not "6" in result # churn, unknown classification
	not "11" in result # churn, restricted
}

test_filter_agrees_with_single_read_decisions if {
	sample := array.slice(resources, 0, 105)
	filtered := filtered_ids(listing(fay, sample))
	singles := {r.id |
		some r in sample
		authz.allow with input as read(fay, r) with data.mlflow.authz.overrides as {}
	}
	singles == filtered
	count(singles) == 40
}

test_filter_for_administrators_and_auditors_returns_everything if {
	count(filtered_ids(listing(root, resources))) == 2000
	count(filtered_ids(listing(audrey, resources))) == 2000
}

test_filter_respects_key_projects if {
	result := filtered_ids(listing(limited(root, ["fraud"]), resources))
	result == {r.id | some r in resources; r.project == "fraud"}
}

test_filter_returns_nothing_when_it_should if {
	count(filtered_ids(listing(null, resources))) == 0
	count(filtered_ids(listing(scoped(fay, []), resources))) == 0
	count(filtered_ids(object.union(listing(fay, resources), {"action": {"access": "write"}}))) == 0
	count(filtered_ids({})) == 0
	count(filtered_ids(listing(fay, "not a list"))) == 0
}

test_filter_returns_each_id_once if {
	result := filtered_ids(listing(fay, [fraud_exp, fraud_exp, churn_exp, {"id": "x"}]))
	result == {"1", "2"}
}

# reads inlines the grants for speed; it must say what granted, cleared_for and unscoped say.
test_inlined_read_grants_match_the_named_rules if {
	mixed := array.concat(resources, [
		fraud_exp, churn_exp, anns_exp,
		{"type": "none"}, {"type": "experiment", "listing": true}, {"type": "mcp", "id": "m"},
		object.union(anns_exp, {"creating": true}), object.union(fraud_exp, {"experiment_id": ""}),
	])
	every subject in [fay, ann, ben, mia, vic] {
		inlined := {r | some r in mixed; authz.reads(r)} with input as read(subject, fraud_exp)
			with data.mlflow.authz.overrides as {}
		named := {r |
			some r in mixed
			authz.granted(r, "read")
			authz.cleared_for(r)
		} with input as read(subject, fraud_exp)
			with data.mlflow.authz.overrides as {}
		unscoped := {r | some r in mixed; authz.unscoped(r)}
		inlined == named | unscoped
	}
}
