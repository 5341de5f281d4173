# Operator settings.
#
# The bundled defaults live in data.json beside this file (OPA loads a data file at the
# data path of its directory: mlflow/authz/data.json is data.mlflow.authz). An operator
# replaces any of them with the same key under data.mlflow.authz.overrides, for example
# a file mlflow/authz/overrides/data.json in MLFLOW_SECURE_POLICY_DIR. Defining the same
# key twice at one path is a load error in OPA, hence the separate overrides document.
package mlflow.authz

import rego.v1

# The effective settings: each bundled default, unless an override names the same key.
config := object.union(bundled_settings, operator_overrides)

bundled_settings["default_classification"] := data.mlflow.authz.default_classification

bundled_settings["allowed_uri_schemes"] := data.mlflow.authz.allowed_uri_schemes

bundled_settings["allowed_uri_hosts"] := data.mlflow.authz.allowed_uri_hosts

bundled_settings["blocked_uri_networks"] := data.mlflow.authz.blocked_uri_networks

bundled_settings["blocked_uri_hostnames"] := data.mlflow.authz.blocked_uri_hostnames

bundled_settings["blocked_uri_host_suffixes"] := data.mlflow.authz.blocked_uri_host_suffixes

default operator_overrides := {}

operator_overrides := data.mlflow.authz.overrides if is_object(data.mlflow.authz.overrides)
