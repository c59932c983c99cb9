"""The budget gate on the request path: admit a call before it goes upstream, settle it after.

Everything answers from memory: the EntityDirectory (entities topic), the TotalsView (totals
topic) and this worker's own Accounts with their budget leases. `admit` checks the key, its team,
its internal user, the request's customer (`user`) and its organisation, then the rpm / tpm /
parallel limits of each of them, and only then reserves the call's upper-bound estimate on every
budgeted entity; `settle` swaps the reservation for the call's real cost. A call that does not fit
an entity's lease raises AwaitRenewal: the caller awaits a renewal (bounded by `lease_wait_s`) and the call is judged again."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import structlog

from services.proxy.auth.keys import CallerIdentity
from services.proxy.budget.admission import Admission, AwaitRenewal, BudgetRequest
from services.proxy.budget.core import (
    MONEY,
    REQUESTS,
    RESETTABLE,
    SLOTS,
    ZERO,
    Account,
    BudgetSpec,
    Reservation,
    counted_spend,
    judge,
    window_of,
)
from services.proxy.budget.entities import EntityDirectory, spec_from_state
from services.proxy.budget.estimate import Rates, estimate
from services.proxy.budget.lease_keeper import LeaseKeeper
from services.proxy.budget.lease_store import LeasesUnavailable, MemoryLeaseStore
from services.proxy.budget.member_budgets import KIND as TEAM_MEMBER
from services.proxy.budget.model_budgets import KIND as MODEL_BUDGET, ModelBudgetExceeded
from services.proxy.budget.rate_limits import KINDS as RATE_KINDS, ONE, RateSpecs, rate_limited, rate_specs
from services.proxy.budget.totals import TotalsView
from services.proxy.errors import AuthError, PermissionDenied, ProxyError
from shared.events import UsageEvent, utcnow
from shared.metrics import Metric
from shared.pricing import Catalog

log = structlog.get_logger(__name__)

_LABEL = {"key": "", "team": "Team={} ", "user": "User={} ", "customer": "End User={} ", "organization": "Organization={} "}
# A call short of lease is judged again after each renewal, 50 ms apart and then up to 0.4 s apart
# (time for other workers to give back what they hold unused), until TALLY_BUDGET_LEASE_WAIT_S.
RENEWAL_SPACING_S = 0.05
MAX_RENEWAL_SPACING_S = 0.4


class BudgetExceeded(ProxyError):
    """LiteLLM's answer when a budget is used up: 400, type "budget_exceeded"."""

    status = 400

    def __init__(self, kind: str, entity_id: str, spend: Decimal, max_budget: Decimal, label: str | None = None) -> None:
        if label is None:
            label = _LABEL.get(kind, "").format(entity_id)
        super().__init__(
            f"Budget has been exceeded! {label}Current cost: {format(spend, 'f')}, Max budget: {format(max_budget, 'f')}",
            type="budget_exceeded", code="400")
        self.kind = kind


@dataclass(slots=True)
class Hold:
    """What admit reserved, for settle to release: each released exactly once."""

    reservations: list[Reservation]
    key_account: Account | None


Short = list[tuple[Account, Decimal]]  # accounts whose lease a call does not fit, with what it lacks


class BudgetGuard:
    def __init__(self, directory: EntityDirectory, totals: TotalsView, catalog: Catalog, rates: dict[str, Rates],
                 keeper: LeaseKeeper | None = None, lease_wait_s: float = 2.0,
                 clock: Callable[[], datetime] = utcnow, double_settlements: Metric | None = None) -> None:
        self.directory = directory
        self.totals = totals
        self.catalog = catalog
        self.rates = rates
        # Without a keeper the guard is its own authority: right for one process, as in unit tests.
        self.keeper = keeper or LeaseKeeper(MemoryLeaseStore(clock), "local", totals)
        self.lease_wait_s = lease_wait_s
        self.clock = clock
        self.slots_held = 0  # max_parallel_requests slots held by calls in flight, over every key
        self._accounts: defaultdict[str, dict[str, Account]] = defaultdict(dict)
        self._fallback: dict[str, tuple[CallerIdentity, BudgetSpec]] = {}
        self._rate_specs: dict[str, tuple[CallerIdentity, RateSpecs]] = {}
        self.double_settlements = double_settlements or Metric("proxy_double_settlements_total", "", "counter")

    def estimate(self, request: BudgetRequest) -> Decimal:
        """The call's upper-bound cost: over its model group and every group it may fall back to."""
        body = getattr(request, "body", None)
        groups = (request.model_group, *getattr(request, "fallback_groups", ()))
        return max(estimate(self.catalog, self.rates.get(group), request.call_type, body) for group in groups)

    # -- the request path ----------------------------------------------------------------------

    def admit(self, request: BudgetRequest) -> Admission:
        outcome = self._admit(request, waited=False)
        if isinstance(outcome, Admission):
            return outcome
        raise AwaitRenewal(lambda still_open: self._admit_after_renewal(request, outcome, still_open))

    async def _admit_after_renewal(self, request: BudgetRequest, short: Short, still_open: Callable[[], None]) -> Admission:
        """Renew the leases the call did not fit and judge it again, at a growing pace while other
        workers may still give back what they hold unused, until lease_wait_s. Then a call still
        short of a budget the authority says is all leased is judged for the last time (admitted as
        a last call, or refused); one still short while budget is left unleased (renewals too slow)
        gets 503, as when the authority cannot be reached."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lease_wait_s
        spacing = RENEWAL_SPACING_S
        while True:
            try:
                await asyncio.wait_for(asyncio.gather(*(self.keeper.renew(account, want) for account, want in short)),
                                       max(deadline - loop.time(), 0.001))
            except asyncio.TimeoutError:
                raise LeasesUnavailable(f"no budget lease was granted within {self.lease_wait_s:g} s") from None
            still_open()
            last = loop.time() + spacing >= deadline
            outcome = self._admit(request, waited=last and all(account.scarce for account, _ in short))
            if isinstance(outcome, Admission):
                return outcome
            if last:
                raise LeasesUnavailable(f"no budget lease large enough was granted within {self.lease_wait_s:g} s")
            short = outcome
            await asyncio.sleep(spacing)  # a bounded retry pace, not a wait for a condition
            spacing = min(spacing * 2, MAX_RENEWAL_SPACING_S)

    def _admit(self, request: BudgetRequest, waited: bool) -> Admission | Short:
        caller = request.caller
        if caller.is_master:
            return Admission(request)
        now = self.clock()
        key_spec = self.directory.spec("key", caller.api_key_hash) or self._fallback_spec(caller)
        key_account = self._account(key_spec, now)
        budgeted: list[tuple[BudgetSpec, Account]] = [(key_spec, key_account)] if key_spec.budgeted else []
        # A team key answers to its team's budget, not its owner's personal one (LiteLLM's rule).
        user_id = None if caller.team_id else caller.user_id
        limits = self._rates_of(caller) if (caller.rpm_limit is not None or caller.tpm_limit is not None
                                            or caller.max_parallel_requests is not None) else ()
        scoped, model_limits = self._scoped_limits(request, now)
        budgeted += scoped
        limits += model_limits
        for kind, entity_id in (("team", caller.team_id), ("user", user_id), ("customer", request.end_user),
                                ("organization", caller.organization_id)):
            if entity_id is None:
                continue
            spec = self.directory.spec(kind, entity_id)
            if spec is None:
                continue
            if spec.blocked:
                _blocked(kind, spec.entity_id)
            if spec.budgeted:
                budgeted.append((spec, self._account(spec, now)))
            rates = self.directory.rates(kind, entity_id)
            if rates:
                limits += rates

        cost = None
        soft = False
        leased = False
        short: Short = []
        for spec, account in budgeted:
            total = self.totals.get(spec.kind, spec.entity_id)
            counted = counted_spend(total, account.start)
            as_of = total.as_of if total is not None else None
            if spec.max_budget is not None:
                if cost is None:
                    cost = self.estimate(request)
                leased = True
                if account.expires <= self.keeper.clock():
                    # The authority may already count this lease as its dead holder's and have granted
                    # its unused part to others: admit nothing on it until a renewal gets through.
                    short.append((account, max(ZERO, account.committed + cost - account.lease)))
                    continue
                verdict = judge(account, counted, as_of, cost, waited)
                if verdict.short:
                    short.append((account, account.committed + cost - account.lease))  # what the call lacks
                elif not verdict.admitted:
                    if spec.kind == MODEL_BUDGET:
                        raise ModelBudgetExceeded(caller, request.model_group)
                    label = f"User={caller.user_id} in Team={caller.team_id} " if spec.kind == TEAM_MEMBER else None
                    raise BudgetExceeded(spec.kind, spec.entity_id, verdict.believed_spend, spec.max_budget, label)
                believed = verdict.believed_spend
            else:
                believed = counted + account.uncounted(as_of) + account.reserved
            if spec.soft_budget is not None and believed >= spec.soft_budget:
                soft = True
        rated: list[tuple[str, Account]] = []
        if limits:
            for measure, spec in limits:
                account = self._account(spec, now)
                if measure == SLOTS and account.expires <= self.keeper.clock():
                    # Slots of a lease the authority may have dropped (no heartbeat got through): ask first.
                    short.append((account, max(ONE, account.committed + ONE - account.lease)))
                    continue
                verdict = judge(account, ZERO, None, ONE, waited)
                if verdict.short:  # tokens settle above the 1 reserved: the lack may be far more than 1
                    short.append((account, account.committed + ONE - account.lease))
                elif not verdict.admitted:
                    raise rate_limited(measure, spec, account, now)
                rated.append((measure, account))
        if short:
            return short

        held = [account.reserve(cost or ZERO) for _, account in budgeted]
        for measure, account in rated:
            held.append(account.reserve(ONE, measure))
            if measure == SLOTS:
                self.slots_held += 1
        if not key_spec.budgeted:
            held.append(key_account.reserve(ZERO))
        return Admission(request, soft_budget_exceeded=soft, reservation=Hold(held, key_account),
                         lease_holder=self.keeper.holder if leased else None)

    def _scoped_limits(self, request: BudgetRequest, now: datetime) -> tuple[list[tuple[BudgetSpec, Account]], RateSpecs]:
        """The limits that hold for this key only on some calls: its model_max_budget and
        model_rpm / tpm_limit for the requested model, and its owner's max_budget_in_team."""
        caller, model = request.caller, request.model_group
        specs = []
        model_budgets = self.directory.model_budgets(caller.api_key_hash)
        if model_budgets is not None and model in model_budgets:
            specs.append(model_budgets[model])
        if caller.team_id is not None and caller.user_id is not None:
            member_budget = self.directory.member_budget(caller.team_id, caller.user_id)
            if member_budget is not None:
                specs.append(member_budget)
        model_rates = self.directory.model_rates(caller.api_key_hash)
        rates = model_rates.get(model, ()) if model_rates is not None else ()
        return [(spec, self._account(spec, now)) for spec in specs], rates

    def settle(self, admission: Admission, event: UsageEvent) -> Decimal | None:
        hold = admission.reservation
        cost = event.quoted_cost or ZERO
        if not isinstance(hold, Hold):
            return self._unbudgeted_key_spend(admission, cost)
        refused = 0
        for reservation in hold.reservations:
            measure = reservation.measure
            if measure == MONEY:
                amount = cost
            elif measure == REQUESTS:
                amount = ONE
            elif measure == SLOTS:
                amount = ZERO  # the slot comes back: nothing stays spent
            else:
                amount = Decimal(event.usage.prompt_tokens + event.usage.completion_tokens)
            released = reservation.account.settle(reservation, amount, event.start_time)
            refused += not released
            if released and measure == SLOTS:
                self.slots_held -= 1
        if refused:
            # A bug upstream of here (the relay settles each call once): the held amounts were
            # not released twice, and the caller gets the key's spend as it stands.
            self.double_settlements.inc()
            log.error("double_settlement", request_id=admission.request.request_id, refused_releases=refused)
        account = hold.key_account
        if account is None:
            return self._unbudgeted_key_spend(admission, cost)
        total = self.totals.get("key", admission.request.caller.api_key_hash)
        return counted_spend(total, account.start) + account.uncounted(total.as_of if total else None)

    def _unbudgeted_key_spend(self, admission: Admission, cost: Decimal) -> Decimal:
        """x-litellm-key-spend for a key without a budget account (the master key included): the
        ledger's total plus this call, which the total cannot show yet."""
        return self.spend_of("key", admission.request.caller.api_key_hash)[0] + cost

    # -- what /metrics shows ---------------------------------------------------------------------

    def reserved_total(self) -> Decimal:
        """The estimates held by calls in flight, summed over every budget account of every entity."""
        return sum((account.reserved for kind, accounts in self._accounts.items() if kind not in RATE_KINDS.values()
                    for account in accounts.values()), ZERO)

    # -- what the admin routes show ------------------------------------------------------------

    def spend_of(self, kind: str, entity_id: str) -> tuple[Decimal, datetime | None]:
        """Current spend in the entity's window (ledger total + this replica's uncounted costs) and
        when the window resets."""
        spec = self.directory.spec(kind, entity_id) or BudgetSpec(kind, entity_id)
        start, end = window_of(spec, self.clock(), self.directory.last_reset)
        total = self.totals.get(kind, entity_id)
        spend = counted_spend(total, start)
        account = self._accounts[kind].get(entity_id)
        if account is not None and account.start == start and account.generation >= 0:
            spend += account.uncounted(total.as_of if total else None)
        return spend, end

    def _rates_of(self, caller: CallerIdentity) -> RateSpecs:
        """The key's rpm / tpm limits as budgets of one-minute windows (rate_limits.py)."""
        cached = self._rate_specs.get(caller.api_key_hash)
        if cached is None or cached[0] is not caller:
            cached = self._rate_specs[caller.api_key_hash] = (caller, rate_specs(caller))
        return cached[1]

    def _fallback_spec(self, caller: CallerIdentity) -> BudgetSpec:
        """A key the KeyTable knows but the directory does not (yet): its limits from the identity."""
        cached = self._fallback.get(caller.api_key_hash)
        if cached is None or cached[0] is not caller:
            cached = self._fallback[caller.api_key_hash] = (caller, _spec_from_identity(caller))
        return cached[1]

    # -- accounts ------------------------------------------------------------------------------

    def _account(self, spec: BudgetSpec, now: datetime) -> Account:
        accounts = self._accounts[spec.kind]  # any entity kind the directory knows
        account = accounts.get(spec.entity_id)
        if account is None:
            account = accounts[spec.entity_id] = Account()
        last_reset = self.directory.last_reset if spec.kind in RESETTABLE else None
        if (account.spec is spec and account.reset_seen == last_reset
                and (account.end is None or now < account.end)):
            return account  # the usual case: same limits, same window
        start, end = window_of(spec, now, last_reset)
        if account.generation < 0 or start != account.start:
            account.roll(start, end)
        account.end = end
        account.spec = spec
        account.reset_seen = last_reset
        return account


def _spec_from_identity(caller: CallerIdentity) -> BudgetSpec:
    return spec_from_state("key", caller.api_key_hash, {
        "max_budget": caller.max_budget, "soft_budget": caller.soft_budget, "budget_duration": caller.budget_duration})


def _blocked(kind: str, entity_id: str) -> None:
    if kind == "team":
        raise AuthError(f"Team={entity_id} is blocked. Update via `/team/unblock` if you're an admin.")
    if kind == "customer":
        raise PermissionDenied(f"End User={entity_id} is blocked. Update via `/customer/unblock` if you're an admin.")
