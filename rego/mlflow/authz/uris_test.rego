package mlflow.authz_test

import rego.v1

import data.mlflow.authz

# Creating an experiment in fraud (ann is an editor there) with an artifact location.
with_uri(subject, uri) := create(subject, object.union(requested("fraud", null), {"uri": uri}))

# Webhooks are for administrators (route census: access admin).
webhook(url) := mlflow(root, "mlflow.webhooks.create", "admin", {"type": "webhook", "id": null, "uri": url})

schemes_reason(scheme) := sprintf(
	"URI scheme %s: is not allowed (allowed: abfss, gs, mlflow-artifacts, models, runs, s3, wasbs)",
	[scheme],
)

internal_reason(host) := sprintf("the URI's host %s is an internal, loopback, link-local or metadata address", [host])

odd_reason(host) := sprintf("the URI's host %s is a numeric address in a non-standard form", [host])

test_uris_of_allowed_schemes_pass if {
	every uri in [
		"s3://bucket/x",
		"S3://bucket/deep/path%20with%20escapes",
		"mlflow-artifacts:/x",
		"mlflow-artifacts://artifacts.example.com:443/x",
		"gs://b/x",
		"wasbs://container@account.blob.core.windows.net/x",
		"abfss://fs@account.dfs.core.windows.net/x",
		"runs:/0123abcd/model",
		"models:/fraud-model/3",
		"s3://bucket.name/x...y/z..",
	] {
		allowed(with_uri(ann, uri))
	}
}

test_missing_or_empty_uri_is_no_uri if {
	allowed(with_uri(ann, null))
	allowed(with_uri(ann, ""))
}

test_disallowed_schemes_are_refused if {
	every uri, scheme in {
		"file:///etc/passwd": "file",
		"FILE:/x": "file",
		"dbfs:/x": "dbfs",
		"http://example.com/x": "http",
		"hdfs://namenode/x": "hdfs",
		"c:/windows/x": "c",
	} {
		result := authz.decision with input as with_uri(ann, uri)
			with data.mlflow.authz.overrides as {}
		schemes_reason(scheme) in result.reasons
	}
}

test_bare_paths_are_refused if {
	denied(with_uri(ann, "/etc/passwd"), {"the URI has no scheme; a bare path names a file on the server"})
	denied(with_uri(ann, "relative/dir"), {"the URI has no scheme; a bare path names a file on the server"})
}

test_parser_differentials_are_refused if {
	reason := "the URI contains whitespace, control characters or backslashes"
	denied(with_uri(ann, " file:///x"), {reason, "the URI has no scheme; a bare path names a file on the server"})
	denied(with_uri(ann, "s3://good.example.com\\@127.0.0.1/x"), {reason, internal_reason("127.0.0.1")})
	denied(with_uri(ann, "s3://bucket/x\ny"), {reason})
}

test_path_traversal_is_refused if {
	every uri in [
		"mlflow-artifacts:/x/../../etc",
		"mlflow-artifacts:../x",
		"s3://bucket/a/%2E%2e/b",
		"s3://bucket/a/.%2e",
		"runs:/abc/..%2f..%2fsecret",
	] {
		denied(with_uri(ann, uri), {"the URI contains a '..' path segment"})
	}
}

# http(s) allowed as for webhooks, to test the host rules on their own.
https_allowed := {"allowed_uri_schemes": ["http", "https", "s3"]}

test_internal_hosts_are_refused if {
	every uri, host in {
		"http://169.254.169.254/latest/meta-data": "169.254.169.254",
		"http://[::1]/": "::1",
		"http://good@127.0.0.1/": "127.0.0.1",
		"http://a@b@10.1.2.3:8080/": "10.1.2.3",
		"https://192.168.1.1./": "192.168.1.1",
		"http://172.31.255.255/": "172.31.255.255",
		"http://0.0.0.0:5000/": "0.0.0.0",
		"http://100.100.100.200/": "100.100.100.200",
		"http://[::ffff:127.0.0.1]/": "::ffff:127.0.0.1",
		"http://[::FFFF:A9FE:A9FE]/": "::ffff:a9fe:a9fe",
		"http://[fd00:ec2::254]/": "fd00:ec2::254",
		"http://[fe80::1]/": "fe80::1",
		"http://localhost:5000/": "localhost",
		"http://LOCALHOST./": "localhost",
		"http://api.localhost/": "api.localhost",
		"http://metadata.google.internal/computeMetadata/v1/": "metadata.google.internal",
		"s3://127.0.0.1/bucket": "127.0.0.1",
	} {
		denied_with(webhook(uri), https_allowed, {internal_reason(host)})
	}
}

test_numeric_hosts_in_odd_forms_are_refused if {
	every uri, host in {
		"http://2130706433/": "2130706433",
		"http://0x7f.1/": "0x7f.1",
		"http://127.1/": "127.1",
		"http://0177.0.0.1/": "0177.0.0.1",
		"http://0/": "0",
	} {
		denied_with(webhook(uri), https_allowed, {odd_reason(host)})
	}
}

test_malformed_hosts_are_refused if {
	denied_with(webhook("http://[::1/x"), https_allowed, {"the URI's host is malformed"})
	every uri, host in {
		"http://%6c%6fcalhost/": "%6c%6fcalhost",
		"http://[fe80::1%25eth0]/": "fe80::1%25eth0",
		"http://exa$mple.com/": "exa$mple.com",
	} {
		denied_with(webhook(uri), https_allowed, {sprintf("the URI's host %s is malformed", [host])})
	}
}

test_web_uris_need_a_fully_qualified_host if {
	denied_with(webhook("http://postgres:5432/"), https_allowed, {"the URI's host postgres is not a fully qualified name"})
	denied_with(webhook("https:///x"), https_allowed, {"the URI has no host"})
	allowed_with(with_uri(ann, "s3://bucket/x"), https_allowed)
}

test_operators_allow_webhooks_and_internal_hosts if {
	allowed_with(webhook("https://hooks.example.com/x"), https_allowed)
	allowed_with(webhook("http://[2001:db8::1]:8080/x"), https_allowed)
	allowed_with(webhook("https://8.8.8.8/x"), https_allowed)
	settings := object.union(https_allowed, {"allowed_uri_hosts": ["Hooks.Internal.", "10.0.0.7", "ci"]})
	allowed_with(webhook("https://hooks.internal/x"), settings)
	allowed_with(webhook("http://user@10.0.0.7:8080/x"), settings)
	allowed_with(webhook("http://ci/x"), settings)
	denied_with(webhook("http://10.0.0.8/x"), settings, {internal_reason("10.0.0.8")})
}

test_administrators_are_refused_unsafe_uris_too if {
	denied(with_uri(root, "file:///etc/passwd"), {schemes_reason("file")})
	result := authz.decision with input as object.union(request(admin, "mlflow.unmapped", "write"), {"resource": {"type": "unmapped", "uri": "file:///x"}})
		with data.mlflow.authz.overrides as {}
	result == {"allow": false, "reasons": {schemes_reason("file")}}
}
