"""Who is calling: the master key, virtual keys and the in-memory key table."""
