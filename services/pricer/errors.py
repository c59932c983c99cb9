"""The pricer's errors: one base class, `PricerError`, for everything the pricer itself raises.

They never reach an HTTP answer (the pricer serves only /health and /metrics), so they do not
derive from shared.errors.TallyError. aiokafka's own errors are handled where they are met."""

from __future__ import annotations

from shared.events import DeadLetter


class PricerError(Exception):
    """Base of every error the pricer raises."""


class LettersRefused(PricerError):
    """The broker refused these dead letters for what they are (too large for the dlq topic, say)."""

    def __init__(self, letters: list[tuple[DeadLetter, BaseException]]) -> None:
        super().__init__(f"{len(letters)} dead letter(s) refused: {letters[0][1]!r}")
        self.letters = letters


class PricedRefused(PricerError):
    """The broker refused priced record batches: (the usage record's coordinates when the batch held
    that one record, else None; the error)."""

    def __init__(self, batches: list[tuple[tuple[str, int, int] | None, BaseException]]) -> None:
        super().__init__(f"{len(batches)} priced record batch(es) refused: {batches[0][1]!r}")
        self.batches = batches
