"""State followed from topics: the generic topic follower and the key table's sync."""
