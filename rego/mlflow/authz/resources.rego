# MLflow resources (RBAC and ABAC).
#
# A mapped MLflow request names a resource the server resolved from MLflow's store (run →
# experiment → project, classification, owner). Who may do what:
#   administrators   everything their scopes permit
#   auditors         read everything, never write
#   project members  viewer: read; editor: read, write, delete; maintainer: editor + manage
#                    (the highest of direct and team memberships wins)
#   owners           read, write, delete on their experiments and registered models outside
#                    any project (and what lives in them)
#   anyone           create an experiment or registered model (in a project: as its editor;
#                    outside any project: it will be theirs); read listings (their results
#                    pass through filter), server information; "public" routes
# always within the credential's scopes and the key's projects, and (except for
# administrators and auditors) the subject's clearance. Everything else (gateway, jobs,
# webhooks, workspaces, MCP, the assistant, resources the server could not place) is for
# administrators, and auditors may read it. Reads use can_read, which filter.rego shares.
package mlflow.authz

import rego.v1

mlflow_endpoint if startswith(input.action.endpoint, "mlflow.")

# Until the route census maps a route, it arrives as mlflow.unmapped: administrators only.
unmapped_endpoint if input.action.endpoint == "mlflow.unmapped"

resource_request if {
	authenticated
	mlflow_endpoint
	not unmapped_endpoint
}

# Health and the UI's static assets (access "public" in the route census): any
# authenticated subject. Anonymous requests are never allowed.
allow if {
	resource_request
	input.action.access == "public"
	count(request_problems) == 0
}

allow if {
	resource_request
	input.action.access == "read"
	can_read(input.resource)
	count(request_problems) == 0
}

allow if {
	resource_request
	not input.action.access in {"read", "public"}
	may_change
	count(request_problems) == 0
}

may_change if can_change(input.resource, input.action.access)

may_change if creates_standalone

# ---------------------------------------------------------------- what a resource is

# Resources placed through their experiment, and registered models with their versions
# (prompts are registered models): the only ones with a project, a classification and an
# owner read from MLflow's store.
experiment_scoped_types := {"experiment", "run", "logged_model", "trace", "dataset", "scorer", "artifact"}

registry_types := {"registered_model", "model_version", "prompt"}

# Not bound to a project: listings (their results pass through filter) and server-wide
# information.
unscoped_resource_types := {"none", "server"}

unscoped(resource) if {
	resource.type in unscoped_resource_types
	not resource.listing
}

unscoped(resource) if {
	resource.listing == true
	not resource.filtered == false
}

# A resource the server describes from the request (something to be created).
being_created(resource) if resource.creating == true

# A resource read from MLflow's store: only then do its project and owner mean anything.
stored(resource) if {
	experiment_scoped_types[resource.type]
	not resource.creating == true
	resource.experiment_id != null
	resource.experiment_id != ""
}

stored(resource) if {
	registry_types[resource.type]
	not resource.creating == true
}

project_of(resource) := resource.project if {
	is_string(resource.project)
	resource.project != ""
}

owns(resource) if {
	is_string(resource.owner)
	resource.owner == input.subject.id
}

resource_noun := replace(input.resource.type, "_", " ") if {
	is_string(input.resource.type)
	input.resource.type != ""
} else := "resource"

# ---------------------------------------------------------------- project roles

role_rank := {"viewer": 1, "editor": 2, "maintainer": 3}

rank_role := {rank: role | some role, rank in role_rank}

role_grants := {
	"viewer": {"read"},
	"editor": {"read", "write", "delete"},
	"maintainer": {"read", "write", "delete", "manage"},
}

# The subject's highest role in each project; input.subject.projects already lists direct
# and team memberships together. Computed once per query.
project_role := {name: rank_role[max(ranks)] |
	some membership in input.subject.projects
	name := membership.name
	is_string(name)
	name != ""
	ranks := {role_rank[m.role] | some m in input.subject.projects; m.name == name}
	count(ranks) > 0
}

role_permits(project, access) if access in project_access[project]

# What the subject may do in each project (from the highest role).
project_access := {project: role_grants[role] | some project, role in project_role}

maintains(project) if role_permits(project, "manage")

project_permits(resource, access) if {
	access in project_access[resource.project]
	stored(resource)
}

# Outside any project a resource belongs to its owner alone (and administrators).
owner_grants := {"read", "write", "delete"}

owner_permits(resource, access) if {
	owns(resource)
	access in owner_grants
	not project_of(resource)
	stored(resource)
}

# What a project role or ownership grants on a stored resource.
granted(resource, access) if project_permits(resource, access)

granted(resource, access) if owner_permits(resource, access)

# ---------------------------------------------------------------- key projects

# A key limited to projects (key_projects not null) reaches only resources in them: not
# other projects, not resources outside any project, not unmapped routes.
key_project_set := {project | some project in key_projects}

within_key_projects(_) if key_projects == null

within_key_projects(resource) if unscoped(resource)

within_key_projects(resource) if project_of(resource) in key_project_set

# ---------------------------------------------------------------- reading

# Whether the subject may read one resource. Shared by allow (read requests) and filter
# (listings); everything about the subject is a complete rule evaluated once per query,
# so a call costs the same for every resource.
can_read(resource) if {
	reader
	within_key_projects(resource)
	reads(resource)
}

reader if {
	authenticated
	scope_permits("read")
}

sees_everything if is_admin

sees_everything if is_auditor

# The same grants as project_permits, owner_permits and unscoped, inlined: filter calls
# this once per resource, and every nested call costs a little (see the filter timings in
# docs/policy-authoring.md).
reads(_) if sees_everything

reads(resource) if {
	"read" in project_access[resource.project]
	stored(resource)
	cleared_for(resource)
}

reads(resource) if {
	resource.owner == input.subject.id
	is_string(resource.owner)
	not project_of(resource)
	stored(resource)
	cleared_for(resource)
}

reads(resource) if {
	unscoped_resource_types[resource.type]
	not resource.listing
}

# A listing whose results the server narrows item by item (filter.rego). A listing it cannot
# narrow yet arrives with "filtered": false and is left to administrators and auditors.
reads(resource) if {
	resource.listing == true
	not resource.filtered == false
}

unfiltered_listing if {
	input.resource.listing == true
	input.resource.filtered == false
}

# ---------------------------------------------------------------- changing

can_change(resource, access) if {
	authenticated
	scope_permits(access)
	within_key_projects(resource)
	changes(resource, access)
}

changes(_, _) if is_admin

changes(resource, access) if {
	not is_auditor
	granted(resource, access)
	cleared_for(resource)
}

# ---------------------------------------------------------------- creating

# Creating a top-level resource: the resource describes what would be created (project and
# classification from the requested tags, see tags.rego). In a project it needs the editor
# role there; outside any project anyone with write scope may create it and will own it.
standalone_creates := {
	"mlflow.experiments.create": "experiment",
	"mlflow.registered_models.create": "registered_model",
}

standalone_create if {
	resource_request
	standalone_creates[input.action.endpoint] == input.resource.type
}

creates_standalone if {
	standalone_create
	input.action.access == "write"
	scope_permits("write")
	within_key_projects(input.resource)
	not is_auditor
	cleared_for(input.resource)
	may_create_in(input.resource)
}

may_create_in(resource) if role_permits(project_of(resource), "write")

may_create_in(resource) if not project_of(resource)

# ---------------------------------------------------------------- why not

specific_reasons contains "MLflow is open to administrators only until project permissions are configured" if {
	authenticated
	not is_admin
	unmapped_endpoint
}

specific_reasons contains msg if {
	authenticated
	mlflow_endpoint
	not within_key_projects(input.resource)
	msg := sprintf("this API key is limited to %s; %s", [key_projects_text, key_reach_detail])
}

key_projects_text := sprintf("projects %s", [concat(", ", sort(key_projects))]) if {
	count(key_projects) > 0
} else := "no project"

key_reach_detail := sprintf("this %s belongs to project %s", [resource_noun, project_of(input.resource)]) if {
	project_of(input.resource)
} else := sprintf("this %s belongs to no project", [resource_noun])

specific_reasons contains "auditors have read-only access to MLflow" if {
	resource_request
	is_auditor
	not is_admin
	not input.action.access in {"read", "public"}
}

specific_reasons contains msg if {
	resource_request
	input.action.access == "read"
	unfiltered_listing
	not can_read(input.resource)
	msg := sprintf(
		"listing %s is open to administrators and auditors only until its results are filtered",
		[input.resource.type],
	)
}

specific_reasons contains "only administrators may change server-wide resources and listings" if {
	resource_request
	not is_admin
	unscoped(input.resource)
	not input.action.access in {"read", "public"}
}

# Project roles and ownership (administrators and auditors are not limited by them).
membership_checked if {
	resource_request
	not is_admin
	not is_auditor
	not unscoped(input.resource)
	not input.resource.listing == true # listings have reasons of their own
}

# The project whose role the request needs: a stored resource's, or a create's.
governing_project := project_of(input.resource) if stored(input.resource)

governing_project := project_of(input.resource) if standalone_create

specific_reasons contains msg if {
	membership_checked
	project := governing_project
	not project_role[project]
	msg := sprintf("you have no role in project %s", [project])
}

specific_reasons contains msg if {
	membership_checked
	project := governing_project
	role := project_role[project]
	not input.action.access in role_grants[role]
	msg := sprintf("your role in project %s (%s) does not permit %v access", [project, role, input.action.access])
}

# Experiments and registered models outside any project, and resources of those kinds the
# server could not find (answered alike, so that a denial does not tell them apart).
specific_reasons contains msg if {
	membership_checked
	project_scoped(input.resource)
	not project_of(input.resource)
	not being_created(input.resource)
	not owner_of_stored(input.resource)
	not standalone_create
	msg := sprintf("this %s belongs to no project; only its owner and administrators may use it", [resource_noun])
}

# Described from the request, not read from the store: nothing but the administrator
# role can vouch for it.
specific_reasons contains msg if {
	membership_checked
	project_scoped(input.resource)
	not stored(input.resource)
	not standalone_create
	unplaced(input.resource)
	msg := sprintf("the server could not place this %s; only administrators may use it", [resource_noun])
}

unplaced(resource) if being_created(resource)

unplaced(resource) if project_of(resource)

project_scoped_types := experiment_scoped_types | registry_types

# A helper, not `not input.resource.type in ...`: OPA evaluates the operands of a negated
# call outside the negation, so an absent type would make that expression fail, not hold.
project_scoped(resource) if resource.type in project_scoped_types

owner_of_stored(resource) if {
	stored(resource)
	owns(resource)
}

specific_reasons contains msg if {
	membership_checked
	owner_of_stored(input.resource)
	not project_of(input.resource)
	not input.action.access in owner_grants
	msg := sprintf("%v access to resources outside any project is for administrators only", [input.action.access])
}

specific_reasons contains msg if {
	membership_checked
	not project_scoped(input.resource)
	msg := sprintf("only administrators may use this %s", [resource_noun])
}
