# Classifications and clearances.
#
# Resources are classified public < internal < confidential < restricted (experiment or
# registered-model tag mlflow.secure.classification); a resource without one counts as
# config.default_classification (data.json: internal). A subject reads or changes a
# resource only with a clearance at least its classification; administrators and
# auditors are not limited by classification. An unknown classification or clearance
# clears nobody (fail closed).
package mlflow.authz

import rego.v1

classification_rank := {"public": 0, "internal": 1, "confidential": 2, "restricted": 3}

classification_of(resource) := resource.classification if {
	is_string(resource.classification)
	resource.classification != ""
} else := config.default_classification

subject_clearance_rank := classification_rank[input.subject.clearance]

# Written for speed (filter calls it per resource): a known classification, or none at all.
cleared_for(resource) if classification_rank[resource.classification] <= subject_clearance_rank

cleared_for(resource) if {
	cleared_for_default
	unclassified(resource)
}

cleared_for_default if classification_rank[config.default_classification] <= subject_clearance_rank

unclassified(resource) if not resource.classification

unclassified(resource) if resource.classification == null

unclassified(resource) if resource.classification == ""

# ---------------------------------------------------------------- why not

# Administrators and auditors are not limited by classification; auditors' writes are
# refused for being writes (resources.rego).
clearance_checked if {
	resource_request
	not is_admin
	not is_auditor
	not unscoped(input.resource)
}

specific_reasons contains msg if {
	clearance_checked
	level := classification_of(input.resource)
	not classification_rank[level]
	msg := sprintf("this %s has an unknown classification (%v)", [resource_noun, level])
}

specific_reasons contains "your account has no known clearance" if {
	clearance_checked
	not subject_clearance_rank
}

specific_reasons contains msg if {
	clearance_checked
	level := classification_of(input.resource)
	classification_rank[level] > subject_clearance_rank
	msg := sprintf(
		"your clearance (%s) is below this %s's classification (%s)",
		[input.subject.clearance, resource_noun, level],
	)
}
