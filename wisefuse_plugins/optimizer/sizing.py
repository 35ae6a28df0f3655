"""Right-sizing a plan under search: each unit's setting (memory, arch and, for bundled
units, bundle size), with the fusion fixed. Shared by the passes (fusion right-sizes each
candidate merge; the memory pass right-sizes the plan) and by the search's repair step.

Settings come from each unit's menu (its Pareto set, cheapest first), so a unit never
holds a setting that another beats on both cost and speed. On a fixed fusion:

1. start cheap: every unit at its cheapest setting, or, on large plans, at the setting
   minimising ``cost + lambda * P95`` with the smallest ``lambda`` that meets the SLO
   (bisection: one walk of the graph per try instead of one greedy step per unit);
2. :func:`meet`: while the SLO is missed, the change that removes the most P95 per dollar
   (only units on the longest path in the draws at or above the P95 can lower it; bounds
   rank them and only the best few are scored exactly: lazy greedy);
3. :func:`claw_back`: give back what the SLO does not need, units with the most to save
   first, each to its cheapest setting that keeps the SLO (a bound decides most of them;
   on small plans the rest are scored exactly);
4. on small plans, :func:`polish`: try each costlier setting of each unit and claw back
   around it; keep it when the plan gets cheaper (a move greedy steps cannot see).

:func:`settle` runs these steps on a :class:`~wisefuse_plugins.optimizer.state.State`.
"""

from __future__ import annotations

import heapq
import math

import numpy as np

from wisefuse_plugins.optimizer.state import State, q95

SMALL_UNITS = 16
"""Up to this many units a plan is small: claw-back scores every candidate exactly and
polish runs; fusion right-sizes around every candidate merge and the bundling pass runs
(beyond it, :func:`settle`'s greedy moves range over the same bundle sizes)."""

_EPS = 1e-9


def settle(state: State, *, start: bool = False, polished: bool = True) -> State:
    """Steps 1 (when ``start``) to 4 (when ``polished``) above on ``state``, in place."""
    small = len(state.units) <= SMALL_UNITS
    if start:
        if small:
            for i in state.units:
                state.choice[i] = 0
            _reload(state)
        else:
            lambda_start(state)
    meet(state)
    if not small:
        slack_pass(state)
    claw_back(state, exact=small)
    if small and polished:
        polish(state)
    return state


def _reload(state: State, tails: bool = True) -> None:
    """Take up ``state.choice`` after changing many of them at once."""
    for i in state.units:
        menu = state.menus[i]
        assert menu is not None
        state.dur[i] = menu.durations[state.choice[i]]
        state.costs[i] = menu.costs[state.choice[i]]
    state.full(tails)


# --------------------------------------------------------------------------- 1. start


def lambda_start(state: State, tries: int = 16) -> None:
    """Each unit at ``argmin cost + lambda * P95`` for the least ``lambda`` meeting the SLO."""
    menus = [m for m in (state.menus[i] for i in state.units) if m is not None]

    def pick(lam: float, tails: bool = False) -> None:
        for i in state.units:
            menu = state.menus[i]
            assert menu is not None
            state.choice[i] = int(np.argmin(menu.costs + lam * menu.p95))
        _reload(state, tails)

    # lambda ($ per ms) where some unit first leaves its cheapest setting, and where the
    # last one reaches its fastest: below the first all are cheapest, above the last fastest
    first, last = math.inf, 0.0
    for m in menus:
        faster = m.p95 < m.p95[0]
        if faster.any():
            first = min(
                first, float(np.min((m.costs[faster] - m.costs[0]) / (m.p95[0] - m.p95[faster])))
            )
        fast = int(np.argmin(m.p95))
        slower = m.p95 > m.p95[fast]
        if slower.any():
            last = max(
                last,
                float(np.max((m.costs[fast] - m.costs[slower]) / (m.p95[slower] - m.p95[fast]))),
            )
    pick(0.0)
    if state.violation() == 0 or not math.isfinite(first):
        return pick(0.0, tails=True)
    lo, hi = max(first, 1e-18) / 2, max(last, first) * 2
    pick(hi)
    if state.violation() > 0:
        return pick(hi, tails=True)  # out of reach: the fastest settings (meet() may trim)
    a, b = math.log(lo), math.log(hi)
    for _ in range(tries):
        mid = (a + b) / 2
        pick(math.exp(mid))
        if state.violation() > 0:
            a = mid
        else:
            b = mid
    pick(math.exp(b), tails=True)


# --------------------------------------------------------------------------- 2. meet


def _tail_mean(x: np.ndarray) -> np.ndarray | float:
    """Mean of the worst 5% of draws (per row): moves whenever any tail draw moves."""
    n = x.shape[-1]
    m = max(1, n // 20)
    part = np.partition(x, n - m, axis=-1)[..., n - m :]
    out = part.mean(axis=-1)
    return float(out) if np.ndim(out) == 0 else out


def meet(state: State, max_steps: int = 100_000) -> None:
    """Greedy: while the SLO is missed, the change with the most P95 removed per dollar.

    When no single change lowers the P95 (two equal longest paths), the tail mean is
    lowered instead, which any change on a tail draw's longest path does.
    """
    for _ in range(max_steps):
        if state.violation() <= 0:
            return
        if not _upgrade(state, q95) and not _upgrade(state, _tail_mean, keep_p95=True):
            return


def _ratio(gain: float, extra: float) -> float:
    return gain / extra if extra > 1e-15 else 1e30 * (1 + gain)


def _upgrade(state: State, objective, keep_p95: bool = False) -> bool:
    """Apply the best change of one unit by gain in ``objective`` per extra dollar
    (with ``keep_p95``, only a change that does not raise the P95: no cycles)."""
    e = state.E
    now = objective(e)
    lo = np.partition(e, math.floor((len(e) - 1) * 0.95))[math.floor((len(e) - 1) * 0.95)]
    top = e >= lo  # draws that decide the P95 (and the tail mean)
    crit = (e[top] - (state.F[:, top] + state.T[:, top])) <= 1e-6
    heap: list[tuple[float, int, int, bool]] = []
    for i in state.units:
        if not crit[i].any():
            continue
        menu = state.menus[i]
        assert menu is not None
        cur = state.choice[i]
        gains = now - objective(state.lower(i, menu.durations))
        extra = menu.costs - state.costs[i]
        for c in np.flatnonzero(gains > _EPS):
            if c != cur:
                heap.append((-_ratio(float(gains[c]), float(extra[c])), i, int(c), False))
    heapq.heapify(heap)
    while heap:
        _, i, c, exact = heapq.heappop(heap)
        menu = state.menus[i]
        assert menu is not None
        if exact:
            state.set(i, c)
            return True
        after = state.peek(i, menu.durations[c])
        if keep_p95 and q95(after) > q95(e) + _EPS:
            continue
        gain = now - objective(after)
        if gain > _EPS:
            extra = float(menu.costs[c] - state.costs[i])
            heapq.heappush(heap, (-_ratio(gain, extra), i, c, True))
    return False


# --------------------------------------------------------------------------- 3. claw back


def budget(state: State) -> float:
    """The P95 (ms) a cheaper plan may have: the SLO, or no worse than now if missed."""
    now = q95(state.E)
    return max(state.space.slo_s * 1000, now) if state.violation() == 0 else now


def claw_back(state: State, *, exact: bool) -> None:
    """Each unit, most to save first, to its cheapest setting that keeps the P95 budget.

    ``max(E, start + orch + d + tail)`` bounds the run from above whatever the change, so
    a setting within budget by the bound is safe; with ``exact`` the others are scored.
    """
    limit = budget(state)
    for _ in range(50):
        changed = False
        order = sorted(
            state.units,
            key=lambda i: -(state.costs[i] - state.menus[i].costs[0]),  # type: ignore[union-attr]
        )
        for i in order:
            menu = state.menus[i]
            assert menu is not None
            cur = state.choice[i]
            cheaper = np.flatnonzero(menu.costs < state.costs[i] - 1e-15)
            if not len(cheaper):
                continue
            safe = q95(state.bound(i, menu.durations[cheaper]), axis=1) <= limit
            pick = None
            for c, ok in zip(cheaper, safe, strict=True):  # cheapest first
                if ok or (exact and q95(state.peek(i, menu.durations[c])) <= limit):
                    pick = int(c)
                    break
            if pick is not None and pick != cur:
                state.set(i, pick)
                changed = True
        if not changed:
            return


def slack_pass(state: State) -> None:
    """Spend each draw's slack in one sweep, upstream units first.

    Every draw gets a deadline: ``max(E, L)``, with ``L`` as high as keeps the P95 within
    budget. Walking back from the ends gives each unit the latest finish that keeps every
    path within the deadlines; walking forward, each unit takes its cheapest setting that
    finishes by then from its (possibly later) start. No path exceeds its deadline, so the
    P95 stays within budget, and the cost cannot rise (the current setting always fits).
    """
    e = state.E
    n = len(e)
    limit = budget(state)
    h = (n - 1) * 0.95
    lo_i = math.floor(h)
    frac = h - lo_i
    srt = np.partition(e, (lo_i, min(lo_i + 1, n - 1)))
    e_lo, e_hi = srt[lo_i], srt[min(lo_i + 1, n - 1)]
    if e_hi <= limit:
        level = limit
    else:  # p95 of max(E, L) = lerp(max(e_lo, L), e_hi): keep it within budget
        level = max(e_lo, (limit - frac * e_hi) / (1 - frac)) if frac < 1 else e_lo
    deadline = np.maximum(e, level)
    k = len(state.nodes)
    orch = state.orch
    latest = np.empty((k, n))
    for i in reversed(range(k)):
        s = state.succs[i]
        if not s:
            latest[i] = deadline
        else:
            latest[i] = (latest[s] - state.dur[s]).min(axis=0) - orch
    finish = np.empty((k, n))
    for i in range(k):
        p = state.preds[i]
        start = finish[p].max(axis=0) if p else np.zeros(n)
        menu = state.menus[i]
        if menu is not None:
            cur = state.choice[i]
            cheaper = np.flatnonzero(menu.costs < state.costs[i] - 1e-15)
            if len(cheaper):
                fits = np.all(start + orch + menu.durations[cheaper] <= latest[i], axis=1)
                if fits.any():
                    cur = int(cheaper[np.argmax(fits)])  # the cheapest that fits
            if cur != state.choice[i]:
                state.choice[i] = cur
                state.dur[i] = menu.durations[cur]
                state.costs[i] = menu.costs[cur]
        finish[i] = start + orch + state.dur[i]
    state.full()


# --------------------------------------------------------------------------- 4. polish


def polish(state: State, rounds: int = 3) -> None:
    """Pay more on one unit if claw-back then saves more elsewhere; keep what helps."""
    for _ in range(rounds):
        improved = False
        for i in list(state.units):
            menu = state.menus[i]
            assert menu is not None
            for c in range(len(menu)):
                if menu.costs[c] <= state.costs[i] + 1e-15:
                    continue
                before = (list(state.choice), state.key())
                state.set(i, c)
                meet(state)
                claw_back(state, exact=True)
                if state.key() < before[1]:
                    improved = True
                    break
                state.choice = before[0]
                _reload(state)
        if not improved:
            return
