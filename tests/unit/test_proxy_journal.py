"""The usage journal: events written before the answer survive a dead process, and are
forgotten once safe."""

from services.proxy.usage_log.journal import Journal


def test_unfinished_events_are_left_for_the_next_process(tmp_path):
    """Events not yet acknowledged when the process dies are found by the next one."""
    journal = Journal(tmp_path)
    first = journal.append(b'{"n":1}')
    journal.append(b'{"n":2}')
    journal.done(first)
    # The process dies here: no close(), no cleanup.
    assert Journal(tmp_path).read_leftovers() == [b'{"n":1}', b'{"n":2}']


def test_a_sealed_segment_is_deleted_once_every_event_is_safe(tmp_path):
    """A full segment whose events all reached Kafka or the spool leaves no file behind."""
    journal = Journal(tmp_path, segment_events=2)
    ids = [journal.append(b'{"n":%d}' % i) for i in range(3)]  # the third opens a new segment
    for segment_id in ids[:2]:
        journal.done(segment_id)
    assert len(list(tmp_path.glob("journal-*"))) == 1 and journal.outstanding == 1


def test_clean_close_with_everything_safe_leaves_nothing(tmp_path):
    """After a clean shutdown with all events safe, the next process recovers nothing."""
    journal = Journal(tmp_path)
    journal.done(journal.append(b'{"n":1}'))
    journal.close()
    assert Journal(tmp_path).read_leftovers() == []


def test_leftovers_are_dropped_once_taken(tmp_path):
    """Once the next process has moved the leftovers to the spool, their files go."""
    Journal(tmp_path).append(b'{"n":1}')
    journal = Journal(tmp_path)
    journal.drop_leftovers()
    assert list(tmp_path.glob("journal-*")) == []


def test_torn_last_line_is_skipped(tmp_path):
    """A line cut short (no newline) is not taken for an event."""
    (tmp_path / "journal-1-0.jsonl").write_bytes(b'{"n":1}\n{"n":')
    assert Journal(tmp_path).read_leftovers() == [b'{"n":1}']
