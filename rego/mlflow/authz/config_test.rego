package mlflow.authz_test

import rego.v1

import data.mlflow.authz

test_bundled_defaults_are_loaded_from_data_json if {
	config := authz.config with data.mlflow.authz.overrides as {}
	config.default_classification == "internal"
	"s3" in config.allowed_uri_schemes
	not "file" in config.allowed_uri_schemes
	not "https" in config.allowed_uri_schemes
	config.allowed_uri_hosts == []
	"169.254.0.0/16" in config.blocked_uri_networks
	"metadata.google.internal" in config.blocked_uri_hostnames
	".internal" in config.blocked_uri_host_suffixes
}

test_an_override_replaces_only_its_own_key if {
	config := authz.config with data.mlflow.authz.overrides as {"default_classification": "confidential"}
	config.default_classification == "confidential"
	config.allowed_uri_schemes == data.mlflow.authz.allowed_uri_schemes
}

test_an_override_that_is_not_an_object_is_ignored if {
	config := authz.config with data.mlflow.authz.overrides as ["default_classification"]
	config.default_classification == "internal"
}
