"""Admission by health, with time passed in: a late sample closes the door, and it opens again
only after a calm spell below the resume level (hysteresis)."""

from __future__ import annotations

import pytest

from afterbeep.domain.admission import AdmissionGate, AdmissionPolicy, Refusal

POLICY = AdmissionPolicy(loop_lag=0.04, prompt_late=0.03, resume=0.5, calm=2.0, trips=2)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def gate() -> tuple[AdmissionGate, FakeClock]:
    clock = FakeClock()
    return AdmissionGate(POLICY, clock), clock


def test_a_healthy_node_takes_calls() -> None:
    g, _ = gate()
    g.loop_lag(0.039)
    g.prompt_late(0.029)
    assert g.refusal() is None and g.closings == 0


def test_one_late_sample_is_not_a_trend_but_samples_in_a_row_are() -> None:
    g, _ = gate()
    for _ in range(3):
        g.loop_lag(0.05)
        g.loop_lag(0.01)  # a single slow timer between normal ones
    assert g.refusal() is None
    g.loop_lag(0.05)
    g.loop_lag(0.05)
    assert g.refusal() is Refusal.LOOP_LAG and g.closings == 1


def test_a_lagging_loop_closes_the_door_until_a_calm_spell() -> None:
    g, clock = gate()
    g.loop_lag(0.05)
    g.loop_lag(0.05)
    assert g.refusal() is Refusal.LOOP_LAG and g.closings == 1
    clock.now += 1.0
    g.loop_lag(0.01)  # back under the resume level (0.02)
    assert g.refusal() is Refusal.LOOP_LAG  # but not calm for 2 s yet
    clock.now += 1.0
    assert g.refusal() is None


def test_samples_between_resume_and_limit_keep_a_closed_door_closed_but_do_not_close_it() -> None:
    g, clock = gate()
    g.loop_lag(0.03)  # under the limit: an open door stays open
    assert g.refusal() is None
    g.loop_lag(0.041)
    g.loop_lag(0.041)
    for _ in range(5):
        clock.now += 1.5
        g.loop_lag(0.025)  # above resume (0.02): not calm
        assert g.refusal() is Refusal.LOOP_LAG
    clock.now += 1.5
    g.loop_lag(0.019)
    assert g.refusal() is Refusal.LOOP_LAG
    clock.now += 0.5
    assert g.refusal() is None
    assert g.closings == 1  # one closing, not one per late sample: no flapping


def test_a_late_prompt_closes_the_door_with_its_own_reason() -> None:
    g, clock = gate()
    g.prompt_late(0.031)
    g.prompt_late(0.031)
    assert g.refusal() is Refusal.PROMPT_LATE
    clock.now += 2.0
    assert g.refusal() is None
    g.prompt_late(0.2)
    assert g.refusal() is Refusal.PROMPT_LATE and g.closings == 2  # still in a row


def test_a_zero_limit_turns_its_signal_off() -> None:
    g = AdmissionGate(AdmissionPolicy(loop_lag=0, prompt_late=0), FakeClock())
    g.loop_lag(10.0)
    g.prompt_late(10.0)
    assert g.refusal() is None


@pytest.mark.parametrize(
    "kwargs", [{"resume": 0.0}, {"resume": 1.5}, {"loop_lag": -1.0}, {"trips": 0}]
)
def test_a_policy_out_of_range_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdmissionPolicy(**kwargs)
