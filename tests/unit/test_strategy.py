"""Choosing among policies from predictions."""

from ferry.domain.vocab import Policy
from ferry.predict.dirty import MIB, DirtyCurve
from ferry.predict.precopy import Guest, Link
from ferry.predict.strategy import Inputs, choose_auto, predict_all, recommend


def inputs(rate: float, link: float, wss: float = 64) -> Inputs:
    return Inputs(Guest(256 * MIB, 140 * MIB, DirtyCurve(rate * MIB, wss * MIB)),
                  Link(link * MIB, link * MIB), None)


def test_fast_link_small_limit_suffices() -> None:
    plan = choose_auto(inputs(16, 200))
    assert plan.postcopy_after_round is None and plan.start_downtime_s == 0.025


def test_small_first_limit_only_when_it_costs_little_time() -> None:
    # 64 MiB/s over a 2 MiB working set, 32 MiB/s link: every round leaves
    # more than fits 25 ms (0.8 MiB) but 50 ms (1.6 MiB) ends it
    plan = choose_auto(inputs(64, 32, wss=2))
    assert plan.start_downtime_s == 0.05 and plan.postcopy_after_round is None


def test_dirtier_above_link_plans_postcopy_and_defaults_do_not_converge() -> None:
    inp = inputs(64, 32, wss=160)
    assert choose_auto(inp).postcopy_after_round == 1
    preds = predict_all(inp)
    assert not preds[Policy.PRECOPY].converges
    assert preds[Policy.AUTO].converges
    assert recommend(preds, inp.limit_s) in (Policy.AUTO, Policy.POSTCOPY)


def test_recommendation_keeps_pause_within_limit() -> None:
    inp = inputs(16, 200)
    preds = predict_all(inp)
    best = recommend(preds, 0.3)
    assert preds[best].converges and preds[best].downtime_s <= 0.3
    assert preds[best].downtime_s < preds[Policy.PRECOPY].downtime_s
