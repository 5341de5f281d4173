# Batched read filtering, and the rule a listing pushes into the store query.
#
# data.mlflow.authz.filter: the ids of input.resources the subject may read, for
# narrowing a listing in one call. Input: subject and action as for decision (action.access
# must be "read"; anything else yields no ids) and resources, a list of resource objects
# each with an id. Output: a set of ids (a JSON array, sorted, no duplicates), empty when
# nothing is readable; always defined. Linear in the number of resources: one can_read
# call per resource (the same rule a single read request uses), never allow per item.
#
# readable_item(resource): whether one listed item may be read. `filter` keeps the items
# it holds for; the server also asks OPA to partially evaluate it (the Compile API) with the
# item's stored attributes unknown and turns the answer into a condition of the store's own
# query (docs/policy-authoring.md, "Listings pushed into the store query").
package mlflow.authz

import rego.v1

filter contains resource.id if {
	some resource in input.resources
	readable_item(resource)
}

readable_item(resource) if {
	input.action.access == "read"
	can_read(resource)
}
