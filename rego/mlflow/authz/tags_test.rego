package mlflow.authz_test

import rego.v1

set_tags(subject, resource, tags) := mlflow(
	subject,
	"mlflow.experiments.set_tag",
	"write",
	object.union(resource, {"new_tags": tags}),
)

move_to(project) := {"mlflow.secure.project": project}

classify(level) := {"mlflow.secure.classification": level}

# Maintainer of both fraud and churn.
max_ := person("max", [direct("fraud", "maintainer"), via_team("churn", "maintainer", "churn-team")], "restricted")

internal_fraud := experiment("8", "fraud", "internal", "bob")

# ---------------------------------------------------------------- project tag

test_editors_do_not_change_the_project_tag if {
	denied(
		set_tags(ann, fraud_exp, move_to("churn")),
		{
			"only maintainers of project fraud may change its project or classification tags",
			"moving a resource to project churn needs the maintainer role there",
		},
	)
	denied(
		set_tags(ann, fraud_exp, move_to(null)),
		{"only maintainers of project fraud may change its project or classification tags"},
	)
}

test_editors_set_other_tags if {
	allowed(set_tags(ann, fraud_exp, {"team": "a", "mlflow.note.content": "x"}))
	allowed(set_tags(ann, object.union(fraud_exp, {"new_tags": null}), {}))
}

test_moving_needs_the_maintainer_role_in_both_projects if {
	denied(set_tags(mia, fraud_exp, move_to("churn")), {"moving a resource to project churn needs the maintainer role there"})
	allowed(set_tags(max_, fraud_exp, move_to("churn")))
	allowed(set_tags(mia, fraud_exp, move_to("fraud")))
}

test_deleting_the_project_tag_moves_out_of_any_project if {
	allowed(set_tags(mia, fraud_exp, move_to(null)))
	allowed(set_tags(mia, fraud_exp, move_to("")))
	denied(
		set_tags(limited(mia, ["fraud"]), fraud_exp, move_to(null)),
		{"this API key is limited to projects fraud; it cannot move a resource out of them"},
	)
}

test_project_limited_key_moves_only_within_its_projects if {
	denied(
		set_tags(limited(max_, ["fraud"]), fraud_exp, move_to("churn")),
		{"this API key is limited to projects fraud; it cannot move a resource to project churn"},
	)
	allowed(set_tags(limited(max_, ["fraud", "churn"]), fraud_exp, move_to("churn")))
	denied(
		set_tags(limited(root, ["fraud"]), fraud_exp, move_to("churn")),
		{"this API key is limited to projects fraud; it cannot move a resource to project churn"},
	)
}

test_owner_moves_an_experiment_into_a_project_they_maintain if {
	own := experiment("9", null, null, "mia")
	allowed(set_tags(mia, own, move_to("fraud")))
	denied(set_tags(mia, own, move_to("churn")), {"moving a resource to project churn needs the maintainer role there"})
	denied(
		set_tags(ben, own, move_to("churn")),
		{
			"this experiment belongs to no project; only its owner and administrators may use it",
			"moving a resource to project churn needs the maintainer role there",
		},
	)
}

test_administrators_move_anything if {
	allowed(set_tags(root, fraud_exp, move_to("anywhere")))
	allowed(set_tags(root, fraud_exp, move_to(null)))
}

# ---------------------------------------------------------------- classification tag

test_maintainers_raise_the_classification if {
	allowed(set_tags(mia, internal_fraud, classify("restricted")))
	allowed(set_tags(mia, internal_fraud, classify("internal")))
	denied(
		set_tags(ann, internal_fraud, classify("restricted")),
		{"only maintainers of project fraud may change its project or classification tags"},
	)
}

test_only_administrators_lower_the_classification if {
	denied(
		set_tags(mia, fraud_exp, classify("public")),
		{"a classification can only be raised; lowering it from confidential to public needs an administrator"},
	)
	allowed(set_tags(root, fraud_exp, classify("public")))
}

test_deleting_the_classification_tag_means_the_default if {
	denied(
		set_tags(mia, fraud_exp, classify(null)),
		{"a classification can only be raised; lowering it from confidential to internal needs an administrator"},
	)
	allowed(set_tags(mia, experiment("10", "fraud", "public", null), classify(null)))
	allowed(set_tags(root, fraud_exp, classify(null)))
}

test_a_classification_must_be_known_even_for_administrators if {
	denied(
		set_tags(root, fraud_exp, classify("top-secret")),
		{"top-secret is not a classification (use public, internal, confidential or restricted)"},
	)
	denied(
		set_tags(mia, fraud_exp, classify("Restricted")),
		{"Restricted is not a classification (use public, internal, confidential or restricted)"},
	)
}

test_owner_raises_the_classification_outside_any_project if {
	allowed(set_tags(ann, anns_exp, classify("confidential")))
	denied(
		set_tags(ann, object.union(anns_exp, {"classification": "confidential"}), classify("public")),
		{"a classification can only be raised; lowering it from confidential to public needs an administrator"},
	)
}

# ---------------------------------------------------------------- on create

test_creating_below_the_default_classification_needs_an_administrator if {
	denied(
		create(ann, requested("fraud", "public")),
		{"only administrators may create resources classified below internal"},
	)
	denied(create(ben, requested(null, "public")), {"only administrators may create resources classified below internal"})
	allowed(create(root, requested("fraud", "public")))
	allowed(create(ann, requested("fraud", "internal")))
}

test_creating_with_an_unknown_classification_is_refused if {
	denied(
		create(root, requested(null, "secret")),
		{"secret is not a classification (use public, internal, confidential or restricted)"},
	)
	denied(
		create(ann, requested("fraud", "secret")),
		{
			"secret is not a classification (use public, internal, confidential or restricted)",
			"this experiment has an unknown classification (secret)",
		},
	)
}

test_creating_above_the_own_clearance_is_refused if {
	denied(
		create(ann, requested("fraud", "restricted")),
		{"your clearance (confidential) is below this experiment's classification (restricted)"},
	)
}

test_a_create_must_be_judged_by_its_requested_tags if {
	reason := "a create request's resource does not match its requested project and classification"

	# A resolver that looked up an existing fraud experiment for a create into churn.
	confused := object.union(fraud_exp, {"id": null, "new_tags": move_to("churn")})
	denied(create(ann, confused), {reason})
	denied(create(root, confused), {reason})
	denied(create(ann, object.union(requested("fraud", null), {"classification": "restricted"})), {reason, "your clearance (confidential) is below this experiment's classification (restricted)"})
	allowed(create(ann, object.union(requested("fraud", "internal"), {"new_tags": {"mlflow.secure.project": "fraud", "mlflow.secure.classification": "internal", "mlflow.secure.other": "x"}})))
}
