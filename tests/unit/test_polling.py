"""The tests' one polling helper: first truthy value back, or a failure naming what and the last outcome."""

import itertools

import pytest

from tests.fixtures.polling import eventually, eventually_async


def test_eventually_returns_the_first_truthy_value():
    """The condition is called until it gives a truthy value, and that value is returned."""
    values = iter([0, [], {"row": 1}, "never reached"])
    assert eventually(lambda: next(values), 5, "a row", interval=0) == {"row": 1}


def test_eventually_names_what_it_waited_for_and_the_last_value():
    """Past the deadline the failure says what was awaited, for how long, and the last value seen."""
    counter = itertools.count()
    with pytest.raises(AssertionError, match=r"^timed out after 0.05s waiting for three rows; last value: False$"):
        eventually(lambda: next(counter) < 0, 0.05, "three rows", interval=0.01)


def test_an_error_not_listed_in_retrying_ends_the_wait_at_once():
    """A condition that raises (a crashed service) fails the test with its own error on the first call."""
    calls = []

    def crashed() -> bool:
        calls.append(1)
        raise RuntimeError("ledger died")

    with pytest.raises(RuntimeError, match="ledger died"):
        eventually(crashed, 5, "the ledger")
    assert calls == [1]


def test_a_retried_error_counts_as_not_yet_and_is_reported_last():
    """Errors of a `retrying` type are retried; when time runs out the last one is named and chained."""
    def refused() -> bool:
        raise ConnectionRefusedError("no")

    with pytest.raises(AssertionError, match=r"waiting for the server; last error: ConnectionRefusedError\('no'\)$") as failure:
        eventually(refused, 0.05, "the server", 0.01, retrying=(OSError,))
    assert isinstance(failure.value.__cause__, ConnectionRefusedError)


async def test_eventually_async_awaits_a_coroutine_condition():
    """An async condition's result is awaited, and its first truthy value returned."""
    values = iter([None, 0, 7])

    async def count() -> int | None:
        return next(values)

    assert await eventually_async(count, 5, "a count", interval=0) == 7


async def test_eventually_async_takes_a_plain_condition_and_fails_with_the_last_value():
    """A plain callable works too; past the deadline the failure names what and the last value."""
    with pytest.raises(AssertionError, match=r"^timed out after 0.05s waiting for rows; last value: \[\]$"):
        await eventually_async(lambda: [], 0.05, "rows", interval=0.01)
