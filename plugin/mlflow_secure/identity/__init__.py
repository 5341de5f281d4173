"""People, service accounts, teams, projects and their credentials."""
