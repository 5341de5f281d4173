package mlflow.authz_test

import rego.v1

import data.mlflow.authz

test_anonymous_request_is_denied_with_a_reason if {
	result := authz.decision with input as {"action": {"endpoint": "mlflow.runs.get"}}
	result.allow == false
	result.reasons == {"the request has no authenticated subject"}
}

test_null_subject_is_anonymous if {
	result := authz.decision with input as {"subject": null}
	result.allow == false
	"the request has no authenticated subject" in result.reasons
}

test_authenticated_subject_is_denied_by_default if {
	result := authz.decision with input as {"subject": {"id": "alice", "kind": "user"}}
	result.allow == false
	result.reasons == {"no policy rule allows this request"}
}

test_decision_is_defined_for_an_empty_input if {
	result := authz.decision with input as {}
	is_boolean(result.allow)
}
