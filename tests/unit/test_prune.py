"""Only the scratch topics of tests and benchmarks are ever pruned."""

from stack.prune import scratch


def test_scratch_prefixes_match_and_nothing_else_does():
    """Test and benchmark topic names are scratch; production topics and look-alike prefixes are not."""
    names = ["t0123456789.usage.v1", "e89abcdef01.priced.v1", "f0000000000.totals.v1", "bench1a2b3c4d.usage.v1",
             "bench1a2b3c.entities.v1", "bb12345678.usage.v1", "be2e12345678.usage.v1",
             "usage.v1", "priced.v1", "prod.usage.v1", "team0123456789.usage.v1", "t01234.usage.v1",
             "tzzzzzzzzzz.usage.v1", "benchmark.usage.v1", "__consumer_offsets"]
    assert scratch(names) == ["bb12345678.usage.v1", "be2e12345678.usage.v1", "bench1a2b3c.entities.v1",
                              "bench1a2b3c4d.usage.v1", "e89abcdef01.priced.v1", "f0000000000.totals.v1",
                              "t0123456789.usage.v1"]
