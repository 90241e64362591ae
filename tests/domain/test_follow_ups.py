"""Who needs following up through another channel, and how drops were answered: pure rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from afterbeep.domain.ringless import (
    SendKind,
    SendStatus,
    VoicemailSend,
    answered_by_counts,
    follow_ups,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def send(n: int, to: str, status: SendStatus, minutes: int, **extra: object) -> VoicemailSend:
    base = VoicemailSend.accepted(
        account_id="acc_a", use_case_id="uc_a", setup_id="setup_a", media_id="media_a",
        from_e164="+12125550100", to_e164=to, foreign_id=None, metadata=None, send_at=None,
        now=T0 + timedelta(minutes=minutes),
    )  # fmt: skip
    return replace(base, id=f"vmsend_{n:026d}", status=status, **extra)  # type: ignore[arg-type]


def test_the_latest_miss_of_each_recipient_not_reached_later() -> None:
    sends = [
        send(1, "+1", SendStatus.FAILED, 0, failure_reason="carrier_rejected"),
        send(2, "+1", SendStatus.SKIPPED, 5, skip_reason="suppressed"),  # the latest miss of +1
        send(3, "+2", SendStatus.FAILED, 0),
        send(4, "+2", SendStatus.DELIVERED, 1),  # reached after its failure
        send(5, "+3", SendStatus.DELIVERED, 0),
        send(6, "+3", SendStatus.FAILED, 2),  # failed after being reached: follow up
        send(7, "+4", SendStatus.ACCEPTED, 3),  # still going
        send(8, "+5", SendStatus.FAILED, 1, kind=SendKind.DROP),
        send(9, "+5", SendStatus.LEFT_VOICEMAIL, 4, kind=SendKind.DROP),  # a drop reached them
    ]
    found = follow_ups(sends)
    assert [(s.to_e164, s.id[-1]) for s in found] == [("+1", "2"), ("+3", "6")]  # newest first
    assert follow_ups([]) == []


def test_answered_by_counts() -> None:
    drops = [
        send(1, "+1", SendStatus.LEFT_VOICEMAIL, 0, answered_by="machine"),
        send(2, "+2", SendStatus.LEFT_VOICEMAIL, 0, answered_by="machine"),
        send(3, "+3", SendStatus.HUMAN_ANSWERED, 0, answered_by="human"),
        send(4, "+4", SendStatus.ACCEPTED, 0),
    ]
    assert answered_by_counts(drops) == {"machine": 2, "human": 1, "none": 1}
    assert list(answered_by_counts(drops)) == ["machine", "human", "none"]
