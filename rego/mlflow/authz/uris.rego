# URIs a request carries.
#
# input.resource.uri is a client-supplied URI (an experiment's artifact_location, a model
# version's source, a webhook's url). It is refused, whoever asks, when:
#   - it has no scheme (a bare path is a file on the server) or a scheme not in
#     config.allowed_uri_schemes (file:, dbfs:, and http(s): unless an operator allows
#     them for webhooks); schemes compare case-insensitively;
#   - it holds whitespace, control characters or backslashes (parser differentials), or
#     a ".." path segment, plain or percent-encoded;
#   - its host (after any userinfo@ and without the port) is malformed, an IP address in
#     config.blocked_uri_networks (loopback, private, link-local and metadata ranges,
#     IPv4-mapped IPv6 included), a numeric address in a non-canonical form (2130706433,
#     0x7f.1, 127.1), a name in config.blocked_uri_hostnames or ending in one of
#     config.blocked_uri_host_suffixes, or for http(s) a single-label (internal) name;
# unless the host is listed in config.allowed_uri_hosts. The policy sees names, not what
# they resolve to: DNS pointing a public name at an internal address needs egress control.
package mlflow.authz

import rego.v1

request_uri := input.resource.uri if {
	is_string(input.resource.uri)
	input.resource.uri != ""
}

uri_scheme := lower(match[0][1]) if {
	match := regex.find_all_string_submatch_n(`^([A-Za-z][A-Za-z0-9+.\-]*):`, request_uri, 1)
}

allowed_uri_scheme_set := {lower(scheme) | some scheme in config.allowed_uri_schemes}

web_uri_schemes := {"http", "https"}

# The authority of a scheme://authority/... URI, and the host in it.
uri_authority := match[0][1] if {
	match := regex.find_all_string_submatch_n(`^[A-Za-z][A-Za-z0-9+.\-]*://([^/?#]*)`, request_uri, 1)
}

uri_host_port := parts[count(parts) - 1] if parts := split(uri_authority, "@")

uri_host := trim_right(lower(split(uri_host_port, ":")[0]), ".") if not startswith(uri_host_port, "[")

uri_host := lower(match[0][1]) if {
	match := regex.find_all_string_submatch_n(`^\[([^\]]*)\]`, uri_host_port, 1)
}

uri_host_is_ip if {
	contains(uri_host, ":")
	net.cidr_is_valid(concat("/", [uri_host, "128"]))
}

uri_host_is_ip if {
	not contains(uri_host, ":")
	net.cidr_is_valid(concat("/", [uri_host, "32"]))
}

uri_host_is_name if regex.match(`^[a-z0-9_-]+(\.[a-z0-9_-]+)*$`, uri_host)

# Resolvers read 2130706433, 0x7f.1 or 127.1 as IPv4 addresses: only the canonical
# dotted-quad form is compared with the blocked networks, any other numeric form refused.
uri_host_is_odd_number if {
	uri_host_is_name
	not uri_host_is_ip
	labels := split(uri_host, ".")
	regex.match(`^(0x[0-9a-f]*|[0-9]+)$`, labels[count(labels) - 1])
}

uri_host_allowed if uri_host in {trim_right(lower(host), ".") | some host in config.allowed_uri_hosts}

uri_host_checked if {
	uri_host != ""
	not uri_host_allowed
}

uri_host_is_internal if {
	uri_host_is_ip
	some network in config.blocked_uri_networks
	net.cidr_contains(network, uri_host)
}

uri_host_is_internal if uri_host in {lower(name) | some name in config.blocked_uri_hostnames}

uri_host_is_internal if {
	some suffix in config.blocked_uri_host_suffixes
	endswith(uri_host, lower(suffix))
}

# ---------------------------------------------------------------- problems

uri_problems contains "the URI contains whitespace, control characters or backslashes" if {
	regex.match(`[\x00-\x20\x7f\\]`, request_uri)
}

uri_problems contains "the URI has no scheme; a bare path names a file on the server" if {
	request_uri
	not uri_scheme
}

uri_problems contains msg if {
	scheme := uri_scheme
	not scheme in allowed_uri_scheme_set
	msg := sprintf(
		"URI scheme %s: is not allowed (allowed: %s)",
		[scheme, concat(", ", sort(allowed_uri_scheme_set))],
	)
}

uri_problems contains "the URI contains a '..' path segment" if {
	regex.match(`(?i)(^|[/:]|%2f|%5c)(\.|%2e){2}($|[/?#]|%2f|%5c)`, request_uri)
}

uri_problems contains "the URI's host is malformed" if {
	uri_authority
	not uri_host
}

uri_problems contains msg if {
	uri_host_checked
	not uri_host_is_ip
	not uri_host_is_name
	msg := sprintf("the URI's host %s is malformed", [uri_host])
}

uri_problems contains msg if {
	uri_host_checked
	uri_host_is_odd_number
	msg := sprintf("the URI's host %s is a numeric address in a non-standard form", [uri_host])
}

uri_problems contains msg if {
	uri_host_checked
	uri_host_is_internal
	msg := sprintf("the URI's host %s is an internal, loopback, link-local or metadata address", [uri_host])
}

uri_problems contains msg if {
	uri_scheme in web_uri_schemes
	uri_host_checked
	uri_host_is_name
	not contains(uri_host, ".")
	not uri_host_is_odd_number
	not uri_host_is_internal
	msg := sprintf("the URI's host %s is not a fully qualified name", [uri_host])
}

uri_problems contains "the URI has no host" if {
	uri_scheme in web_uri_schemes
	uri_host == ""
}
