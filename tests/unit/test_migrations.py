"""The migrations folder is well formed."""

from shared.migrations import discover


def test_migrations_are_numbered_in_order_without_gaps():
    """Versions run 1..N with no gap or duplicate, so every database applies the same sequence."""
    versions = [m.version for m in discover()]
    assert versions == list(range(1, len(versions) + 1))


def test_migrations_name_no_schema():
    """No migration pins a schema: replay builds the same tables in a fresh schema via search_path."""
    for migration in discover():
        assert "public." not in migration.sql.lower(), migration.name
