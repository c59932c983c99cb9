"""The management API: keys, teams, users, customers; changes published on the entities topic."""
