from dataclasses import replace
from datetime import UTC, datetime

from afterbeep.domain.mailboxes import Mailbox

NOW = datetime(2026, 12, 7, tzinfo=UTC)
BOX = Mailbox(
    id="vm_1", account_id="acc_1", name="Desk", greeting_media_id=None, skip_instructions=False,
    quota_mb=100, notify_email=None, pin_secret_ref=None, language="en", timezone="UTC",
    max_message_seconds=120, min_message_seconds=1, silence_seconds=5, max_messages=100,
    attach_audio=False, created_at=NOW, updated_at=NOW,
)  # fmt: skip


def test_the_greeting_a_caller_hears() -> None:
    assert BOX.greeting_for(busy=False) is None and BOX.greeting_for(busy=True) is None
    unavailable = replace(BOX, greeting_media_id="media_u")
    assert unavailable.greeting_for(busy=True) == "media_u"  # no busy greeting: the unavailable
    both = replace(unavailable, busy_greeting_media_id="media_b")
    assert both.greeting_for(busy=False) == "media_u"
    assert both.greeting_for(busy=True) == "media_b"
    away = replace(both, temp_greeting_media_id="media_t")
    assert away.greeting_for(busy=False) == "media_t" == away.greeting_for(busy=True)
