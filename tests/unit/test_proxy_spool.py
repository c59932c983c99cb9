"""The spool keeps events across a crash and gives each back until Kafka acknowledged it."""

from services.proxy.usage_log.spool import Spool


def test_round_trip_in_order(tmp_path):
    """What was appended is read back, oldest first, and released files are gone."""
    spool = Spool(tmp_path)
    spool.append([b'{"n":1}', b'{"n":2}'])
    spool.append([b'{"n":3}'])
    assert spool.pending == 3
    files = spool.claim()
    assert [line for f in files for line in spool.read(f)] == [b'{"n":1}', b'{"n":2}', b'{"n":3}']
    for f in files:
        spool.release(f, 3)
    assert spool.pending == 0
    assert spool.claim() == []


def test_appends_after_a_claim_go_to_a_new_file(tmp_path):
    """Events arriving while a file drains are not lost with it."""
    spool = Spool(tmp_path)
    spool.append([b"a"])
    first = spool.claim()
    spool.append([b"b"])
    spool.release(first[0], 1)
    assert [line for f in spool.claim() for line in spool.read(f)] == [b"b"]


def test_a_restarted_spool_finds_what_was_left(tmp_path):
    """A new Spool on the same directory counts and returns the earlier events, claimed or not."""
    old = Spool(tmp_path)
    old.append([b"a", b"b"])
    old.claim()
    old.append([b"c"])
    old.close()
    new = Spool(tmp_path)
    assert new.pending == 3
    assert [line for f in new.claim() for line in new.read(f)] == [b"a", b"b", b"c"]


def test_a_torn_last_line_is_skipped(tmp_path):
    """A crash mid-write leaves a line without newline: it is skipped, the rest is read."""
    spool = Spool(tmp_path)
    spool.append([b"a"])
    with open(spool.active_path, "ab") as handle:
        handle.write(b'{"half')
    files = spool.claim()
    assert [line for f in files for line in spool.read(f)] == [b"a"]
    assert spool.torn_lines == 1


def test_cached_partitioner_agrees_with_kafkas_default():
    """Remembering murmur2 per key picks exactly the partition aiokafka's default would."""
    from aiokafka.partitioner import DefaultPartitioner

    from services.proxy.usage_log.batching import CachedPartitioner

    cached, default = CachedPartitioner(limit=10), DefaultPartitioner()
    partitions = list(range(6))
    for i in range(50):
        key = f"{i:064x}".encode()
        assert cached(key, partitions, partitions) == default(key, partitions, partitions)
        assert cached(key, partitions, partitions) == default(key, partitions, partitions)
