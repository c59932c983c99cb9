"""Admin request checks: LiteLLM's fields only, exact money, no negative budgets, real durations."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.proxy.admin.validation import AdminBadRequest, parse_body, validate


def test_money_is_parsed_exactly() -> None:
    """max_budget 0.000148 stays exactly Decimal("0.000148")."""
    fields = validate("/key/generate", parse_body(b'{"max_budget": 0.000148, "budget_duration": "30d"}'))
    assert fields == {"max_budget": Decimal("0.000148"), "budget_duration": "30d"}


@pytest.mark.parametrize(("body", "param"), [
    (b'{"colour": "red"}', "colour"),
    (b'{"max_budget": -1}', "max_budget"),
    (b'{"max_budget": true}', "max_budget"),
    (b'{"budget_duration": "30w"}', "budget_duration"),
    (b'{"duration": "0s"}', "duration"),
    (b'{"rpm_limit": 1.5}', "rpm_limit"),
    (b'{"models": "gpt-4"}', "models"),
])
def test_bad_fields_are_400s_naming_the_field(body: bytes, param: str) -> None:
    """Each bad field is refused with the field named as the error's param."""
    with pytest.raises(AdminBadRequest) as info:
        validate("/key/generate", parse_body(body))
    assert (info.value.status, info.value.param) == (400, param)


def test_required_fields_are_required() -> None:
    """/key/update without key is a 400 naming key."""
    with pytest.raises(AdminBadRequest) as info:
        validate("/key/update", {"max_budget": 1})
    assert info.value.param == "key"


def test_a_body_that_is_not_an_object_is_refused() -> None:
    """A JSON list is not a request body."""
    with pytest.raises(AdminBadRequest):
        parse_body(b"[1, 2]")


def test_team_members_are_normalised() -> None:
    """A single member object becomes a one-element list with the default role."""
    fields = validate("/team/member_add", {"team_id": "t", "member": {"user_id": "u"}})
    assert fields["member"] == [{"user_id": "u", "user_email": None, "role": "user"}]
