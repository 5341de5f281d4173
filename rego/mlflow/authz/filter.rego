# Batched read filtering.
#
# data.mlflow.authz.filter: the ids of input.resources the subject may read, for
# narrowing a listing in one call. Input: subject and action as for decision (action.access
# must be "read"; anything else yields no ids) and resources, a list of resource objects
# each with an id. Output: a set of ids (a JSON array, sorted, no duplicates), empty when
# nothing is readable; always defined. Linear in the number of resources: one can_read
# call per resource (the same rule a single read request uses), never allow per item.
package mlflow.authz

import rego.v1

filter contains resource.id if {
	input.action.access == "read"
	some resource in input.resources
	can_read(resource)
}
