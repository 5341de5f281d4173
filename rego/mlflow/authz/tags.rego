# Changes to the project and classification tags.
#
# mlflow.secure.project and mlflow.secure.classification decide who sees a resource, so
# changing them (in input.resource.new_tags: set on create or set-tag, null or "" for a
# deleted tag) is reserved:
#   - on an existing resource, only a maintainer of its current project (or, outside any
#     project, its owner) changes either tag; moving it to another project also needs the
#     maintainer role there; deleting the project tag moves it out of any project;
#   - a classification only goes up (deleting it means the default); only administrators
#     lower it, and only administrators create top-level resources classified below the
#     default;
#   - a project-limited key never moves a resource outside its projects;
#   - a classification must be one of the four known ones, even for administrators.
# Creating a top-level resource in a project needs the editor role there (resources.rego).
package mlflow.authz

import rego.v1

project_tag := "mlflow.secure.project"

classification_tag := "mlflow.secure.classification"

default new_tags := {}

new_tags := input.resource.new_tags if is_object(input.resource.new_tags)

changes_project if project_tag in object.keys(new_tags)

changes_classification if classification_tag in object.keys(new_tags)

# The value a request gives a tag; undefined when it deletes the tag.
tag_value(key) := new_tags[key] if {
	is_string(new_tags[key])
	new_tags[key] != ""
}

# The classification a change asks for; deleting the tag means the default.
requested_classification := level if {
	level := tag_value(classification_tag)
} else := config.default_classification

# A change to an existing resource (a create is judged in resources.rego).
retagging if {
	changes_project
	not standalone_create
}

retagging if {
	changes_classification
	not standalone_create
}

# The project an existing resource moves to, when it moves to one.
moves_to := target if {
	not standalone_create
	target := tag_value(project_tag)
	not in_project(input.resource, target)
}

in_project(resource, project) if project_of(resource) == project

moves_out_of_projects if {
	changes_project
	not standalone_create
	not tag_value(project_tag)
}

tag_problems contains msg if {
	changes_classification
	level := tag_value(classification_tag)
	not classification_rank[level]
	msg := sprintf("%v is not a classification (use public, internal, confidential or restricted)", [level])
}

tag_problems contains msg if {
	retagging
	not is_admin
	project := project_of(input.resource)
	not maintains(project)
	msg := sprintf("only maintainers of project %s may change its project or classification tags", [project])
}

tag_problems contains msg if {
	not is_admin
	target := moves_to
	not maintains(target)
	msg := sprintf("moving a resource to project %s needs the maintainer role there", [target])
}

tag_problems contains msg if {
	target := moves_to
	key_projects != null
	not target in key_project_set
	msg := sprintf("this API key is limited to %s; it cannot move a resource to project %s", [key_projects_text, target])
}

tag_problems contains msg if {
	moves_out_of_projects
	key_projects != null
	msg := sprintf("this API key is limited to %s; it cannot move a resource out of them", [key_projects_text])
}

tag_problems contains msg if {
	changes_classification
	not standalone_create
	not is_admin
	current := classification_of(input.resource)
	classification_rank[requested_classification] < classification_rank[current]
	msg := sprintf(
		"a classification can only be raised; lowering it from %s to %s needs an administrator",
		[current, requested_classification],
	)
}

tag_problems contains msg if {
	standalone_create
	not is_admin
	level := classification_of(input.resource)
	classification_rank[level] < classification_rank[config.default_classification]
	msg := sprintf("only administrators may create resources classified below %s", [config.default_classification])
}

# A create's resource describes what would be created: its project and classification must
# be the ones the request's tags ask for (a resolver that looked up something else instead
# must not let the create be judged against the wrong project).
tag_problems contains "a create request's resource does not match its requested project and classification" if {
	standalone_create
	not create_matches_tags
}

create_matches_tags if {
	described_project == requested_project
	described_classification == requested_level
}

described_project := project if {
	project := project_of(input.resource)
} else := null

requested_project := project if {
	project := tag_value(project_tag)
} else := null

described_classification := level if {
	level := input.resource.classification
	is_string(level)
	level != ""
} else := null

requested_level := level if {
	level := tag_value(classification_tag)
} else := null
