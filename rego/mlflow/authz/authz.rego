# METADATA
# title: mlflow-secure authorisation entry point
# description: |
#   The server asks for data.mlflow.authz.decision on every request that reaches the
#   policy. It must be defined for every input: {"allow": bool, "reasons": [string]}.
#   The input contract is documented in docs/policy-authoring.md.
package mlflow.authz

import rego.v1

# Deny by default: a request is allowed only when a rule below says so.
default allow := false

decision := {"allow": allow, "reasons": deny_reasons}

deny_reasons contains "the request has no authenticated subject" if {
	not allow
	not authenticated
}

deny_reasons contains "no policy rule allows this request" if {
	not allow
	authenticated
}

authenticated if input.subject.id
