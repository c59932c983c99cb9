"""A change an admin route applied here is not undone by older changes the topic brings back."""

from __future__ import annotations

from services.proxy.budget.entities import EntityDirectory
from shared.events import EntityChanged


def _team(alias: str) -> EntityChanged:
    return EntityChanged(entity_type="team", entity_id="t1", state={"team_alias": alias})


def test_an_older_change_read_from_the_topic_is_skipped_until_ours_comes_back() -> None:
    """new (topic) after update (here) is skipped; our update from the topic clears the mark; later changes apply."""
    directory = EntityDirectory()
    created, renamed, later = _team("a"), _team("b"), _team("c")
    directory.apply_here(created)
    directory.apply_here(renamed)
    directory.apply(created)  # the follower, still behind
    assert directory.state("team", "t1") == {"team_alias": "b"}
    directory.apply(renamed)  # the follower reaches our own change
    directory.apply(later)  # another replica's change, after ours in the log
    assert directory.state("team", "t1") == {"team_alias": "c"}


def test_other_replicas_changes_apply_in_log_order() -> None:
    """Without a change made here, every change from the topic applies as read."""
    directory = EntityDirectory()
    for alias in ("a", "b"):
        directory.apply(_team(alias))
    assert directory.state("team", "t1") == {"team_alias": "b"}
