package mlflow.authz_test

import rego.v1

# Three classifications against an internal clearance (bob edits fraud).
bob := person("bob", [direct("fraud", "editor")], "internal")

fraud_at(level) := experiment("7", "fraud", level, "carl")

test_clearance_must_reach_the_classification if {
	allowed(read(bob, fraud_at("public")))
	allowed(write(bob, fraud_at("internal")))
	denied(
		read(bob, fraud_at("confidential")),
		{"your clearance (internal) is below this experiment's classification (confidential)"},
	)
	denied(
		write(bob, fraud_at("restricted")),
		{"your clearance (internal) is below this experiment's classification (restricted)"},
	)
	allowed(read(mia, fraud_at("restricted")))
}

test_unclassified_counts_as_the_default if {
	public_only := person("pia", [direct("fraud", "viewer")], "public")
	denied(read(public_only, fraud_at(null)), {"your clearance (public) is below this experiment's classification (internal)"})
	denied(read(public_only, fraud_at("")), {"your clearance (public) is below this experiment's classification (internal)"})
	allowed(read(public_only, fraud_at("public")))
	allowed(read(bob, fraud_at(null)))
	allowed(read(bob, fraud_at("")))
	allowed(read(bob, object.remove(fraud_at(null), ["classification"])))
}

test_operators_change_the_default_classification if {
	public_only := person("pia", [direct("fraud", "viewer")], "public")
	allowed_with(read(public_only, fraud_at(null)), {"default_classification": "public"})
	denied_with(read(bob, fraud_at(null)), {"default_classification": "confidential"}, {"your clearance (internal) is below this experiment's classification (confidential)"})
}

test_unknown_classification_clears_nobody_but_admins_and_auditors if {
	denied(read(mia, fraud_at("Secret")), {"this experiment has an unknown classification (Secret)"})
	allowed(read(root, fraud_at("Secret")))
	allowed(read(audrey, fraud_at("Secret")))
}

test_unknown_clearance_clears_nothing if {
	nobody := object.remove(bob, ["clearance"])
	denied(read(nobody, fraud_at("public")), {"your account has no known clearance"})
}

test_classification_does_not_limit_admins_and_auditors if {
	allowed(read(audrey, fraud_at("restricted")))
	allowed(mlflow(object.union(root, {"clearance": "public"}), "mlflow.experiments.delete", "delete", fraud_at("restricted")))
}
