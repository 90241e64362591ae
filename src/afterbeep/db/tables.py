"""Table definitions (SQLAlchemy Core). Alembic migrations in `migrations/` create them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class CallerJSON(TypeDecorator[Any]):
    """JSON a caller wrote. A stored value that cannot be decoded (too deep for the decoder,
    not JSON) reads as `UNREADABLE` instead of failing the whole query that holds its row.
    (asyncpg decodes JSON in the driver, so on PostgreSQL `tolerant_json_loads` does it.)"""

    impl = JSON
    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        decode = super().result_processor(dialect, coltype)
        if decode is None:
            return None

        def tolerant(value: Any) -> Any:
            try:
                return decode(value)
            except (ValueError, TypeError, RecursionError):
                return UNREADABLE

        return tolerant


class Unreadable:
    """The value of a `CallerJSON` column that could not be decoded."""

    def __repr__(self) -> str:
        return "UNREADABLE"


UNREADABLE = Unreadable()


def tolerant_json_loads(text: str | bytes) -> Any:
    """The engine's JSON decoder where the driver decodes: `UNREADABLE` for what cannot be."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return UNREADABLE


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _id(name: str = "id") -> Column[str]:
    return Column(name, String(40), primary_key=True)


def _account() -> Column[str]:
    return Column("account_id", String(40), ForeignKey("accounts.id"), nullable=False, index=True)


def _created() -> Column[datetime]:
    return Column("created_at", UtcDateTime(), nullable=False)


def _updated() -> Column[datetime]:
    return Column("updated_at", UtcDateTime(), nullable=False)


accounts = Table(
    "accounts",
    metadata,
    _id(),
    Column("name", String(200), nullable=False),
    _created(),
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    Column("language", String(35), nullable=False, server_default="en"),
    # 0014_users: whether its devices may dial numbers outside afterbeep
    Column("allow_device_outbound", Boolean, nullable=False, server_default=false()),
    # 0018_device_outbound: the telephony setup its devices dial out through (no FK: a deleted
    # setup leaves the id dangling, and dialling out is refused)
    Column("device_outbound_setup_id", String(40), nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    _id(),
    _account(),
    Column("key_hash", String(64), nullable=False, unique=True),
    _created(),
    Column("revoked_at", UtcDateTime(), nullable=True),
    # written at most once a minute per key and process (AccountService.authenticate)
    Column("last_used_at", UtcDateTime(), nullable=True),
)

secrets = Table(
    "secrets",
    metadata,
    Column("ref", String(200), primary_key=True),
    _account(),
    Column("value", Text, nullable=False),
    _created(),
    _updated(),
)

media = Table(
    "media",
    metadata,
    _id(),
    _account(),
    Column("name", String(255), nullable=False),
    Column("format", String(32), nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("sample_rate", Integer, nullable=False),
    Column("channels", Integer, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("original_key", String(300), nullable=False),
    Column("telephony_key", String(300), nullable=False),
    _created(),
    Column("stored_bytes", BigInteger, nullable=False, server_default=text("0")),
    # Transcription on request (`transcribe: true` on upload); status None: never asked.
    Column("transcript", JSON, nullable=True),
    Column("transcription_status", String(16), nullable=True),
    Column("transcription_reason", String(500), nullable=True),
    # Identical audio is stored once per account.
    Index("uq_media_account_sha256", "account_id", "sha256", unique=True),
)

mailboxes = Table(
    "mailboxes",
    metadata,
    _id(),
    _account(),
    Column("name", String(200), nullable=False),
    Column("greeting_media_id", String(40), ForeignKey("media.id"), nullable=True),
    Column("skip_instructions", Boolean, nullable=False),
    Column("quota_mb", Integer, nullable=False),
    Column("notify_email", String(320), nullable=True),
    Column("pin_secret_ref", String(200), nullable=True),
    Column("language", String(16), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("max_message_seconds", Integer, nullable=False),
    Column("min_message_seconds", Integer, nullable=False),
    Column("silence_seconds", Integer, nullable=False),
    Column("max_messages", Integer, nullable=False),
    Column("attach_audio", Boolean, nullable=False),
    Column("full_notified_at", UtcDateTime(), nullable=True),
    _created(),
    _updated(),
    # 0013_members: whose inbox shows it (members of role `member` see only their own)
    Column("owner_member_id", String(40), ForeignKey("members.id"), nullable=True),
    # 0017_greeting_kinds: played when the caller was sent here busy / instead of the others
    Column("busy_greeting_media_id", String(40), ForeignKey("media.id"), nullable=True),
    Column("temp_greeting_media_id", String(40), ForeignKey("media.id"), nullable=True),
    # 0022_phone_menu: the owner's recorded name; `*97` from the owner's phone without the PIN
    Column("name_media_id", String(40), ForeignKey("media.id"), nullable=True),
    Column("skip_pin_from_own_device", Boolean, nullable=False, server_default=false()),
    # 0021_cc_connector: the queue whose team gets its messages (the seed 002 sequence), and the
    # call center (cc_) or outside contact center (ccx_) that receives them
    Column("queue_id", String(40), nullable=True),
    Column("call_center_id", String(40), nullable=True),
    Column("connector_id", String(40), nullable=True),
)

messages = Table(
    "messages",
    metadata,
    _id(),
    _account(),
    Column("mailbox_id", String(40), ForeignKey("mailboxes.id"), nullable=False),
    Column("call_id", String(200), nullable=False),
    Column("caller", String(300), nullable=True),
    Column("caller_name", String(200), nullable=True),
    Column("callee", String(300), nullable=True),
    Column("duration_ms", Integer, nullable=False),
    Column("folder", String(16), nullable=False),
    Column("read", Boolean, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("audio_key", String(300), nullable=False),
    Column("recovered", Boolean, nullable=False, default=False),
    _created(),
    _updated(),
    # 0013_members: deleted from the inbox, restorable until it is purged (then gone for good)
    Column("deleted_at", UtcDateTime(), nullable=True),
    # Transcription (issue 19): `transcript` is Transcript.as_dict(); the status is
    # pending/done/failed/skipped, the reason says why failed or skipped.
    Column("transcript", JSON, nullable=True),
    Column("transcription_status", String(16), nullable=False, server_default="skipped"),
    Column("transcription_reason", String(500), nullable=True),
    UniqueConstraint("account_id", "call_id"),
    Index("ix_messages_mailbox_folder", "mailbox_id", "folder"),
)

numbers = Table(
    "numbers",
    metadata,
    _id(),
    _account(),
    Column("e164", String(20), nullable=False, unique=True),
    Column("dest_kind", String(16), nullable=False),
    Column("dest_id", String(40), nullable=True),  # null for `hangup`
    Column("schedule_id", String(40), nullable=True),
    Column("closed_dest_kind", String(16), nullable=True),
    Column("closed_dest_id", String(40), nullable=True),
    Column("holiday_dest_kind", String(16), nullable=True),
    Column("holiday_dest_id", String(40), nullable=True),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("allow_anonymous", Boolean, nullable=False, server_default=true()),
    _created(),
    _updated(),
    Index("ix_numbers_account_schedule", "account_id", "schedule_id"),
)

schedules = Table(
    "schedules",
    metadata,
    _id(),
    _account(),
    Column("name", String(200), nullable=False),
    Column("timezone", String(64), nullable=True),
    Column("rules", JSON, nullable=False),
    _created(),
    _updated(),
)

webhooks = Table(
    "webhooks",
    metadata,
    _id(),
    _account(),
    Column("url", String(2000), nullable=False),
    Column("events", JSON, nullable=False),
    Column("secret", String(200), nullable=False),
    _created(),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    _id(),
    _account(),
    Column("webhook_id", String(40), ForeignKey("webhooks.id"), nullable=False),
    Column("event_id", String(40), nullable=False),
    Column("event", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("claimed_until", UtcDateTime(), nullable=True),
    _created(),
    _updated(),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_webhook", "webhook_id", "id"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("headers", JSON, nullable=True),
    Column("body", LargeBinary, nullable=True),
    _created(),
    Index("ix_idempotency_keys_created", "created_at"),
)

email_outbox = Table(
    "email_outbox",
    metadata,
    _id(),
    _account(),
    Column("kind", String(32), nullable=False),
    Column("mailbox_id", String(40), nullable=False),
    Column("message_id", String(40), nullable=True),
    Column("dedupe_key", String(120), nullable=False, unique=True),
    Column("to_addr", String(320), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("claimed_until", UtcDateTime(), nullable=True),
    Column("last_error", String(500), nullable=True),
    _created(),
    _updated(),
    Index("ix_email_outbox_due", "status", "next_attempt_at"),
)

# -- ringless voicemail --------------------------------------------------------

telephony_setups = Table(
    "telephony_setups",
    metadata,
    _id(),
    _account(),
    Column("name", String(200), nullable=False),
    Column("trunk_host", String(255), nullable=False),
    Column("trunk_port", Integer, nullable=False),
    Column("transport", String(8), nullable=False),
    Column("username", String(200), nullable=True),
    Column("password_ref", String(200), nullable=True),
    Column("outbound_proxy", String(300), nullable=True),
    Column("from_domain", String(255), nullable=True),
    Column("max_calls_per_second", Float, nullable=False),
    Column("max_concurrent_calls", Integer, nullable=False),
    Column("deposit_uri", String(500), nullable=False),
    Column("deposit_headers", JSON, nullable=False),
    _created(),
    _updated(),
)

setup_numbers = Table(
    "setup_numbers",
    metadata,
    Column(
        "setup_id",
        String(40),
        ForeignKey("telephony_setups.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("e164", String(20), primary_key=True),
    _account(),
    Column("verified", Boolean, nullable=False),
    Column("position", Integer, nullable=False),
)

use_cases = Table(
    "use_cases",
    metadata,
    _id(),
    _account(),
    Column("channel", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", String(2000), nullable=True),
    Column("setup_id", String(40), ForeignKey("telephony_setups.id"), nullable=False, index=True),
    Column("sender_selection", String(32), nullable=False),
    Column("sender_number", String(20), nullable=True),
    Column("require_consent", Boolean, nullable=False),
    Column("window_start", String(5), nullable=False),
    Column("window_end", String(5), nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("retry_backoff_seconds", Integer, nullable=False),
    Column("cap_attempts", Integer, nullable=False),
    Column("cap_period_hours", Integer, nullable=False),
    _created(),
    _updated(),
    # the next round-robin position over the setup's verified numbers (bumped per send)
    Column("rr_next", Integer, nullable=False, server_default="0"),
    # ringless: the drop use case tried when no deposit method applies
    Column("fallback_use_case_id", String(40), ForeignKey("use_cases.id"), nullable=True),
    # drops: the two-call technique's timing
    Column("second_call_delay_ms", Integer, nullable=False, server_default="2000"),
    Column("first_call_bound_ms", Integer, nullable=False, server_default="6000"),
)

campaigns = Table(
    "campaigns",
    metadata,
    _id(),
    _account(),
    Column("name", String(200), nullable=True),
    Column("use_case_id", String(40), ForeignKey("use_cases.id"), nullable=False),
    Column("media_id", String(40), ForeignKey("media.id"), nullable=False),
    Column("method", String(16), nullable=False),
    Column("technique", String(16), nullable=True),
    Column("status", String(16), nullable=False),
    Column("start_at", UtcDateTime(), nullable=True),
    Column("recipients_total", Integer, nullable=False),
    _created(),
    _updated(),
    Index("ix_campaigns_account_id_id", "account_id", "id"),
)

voicemail_sends = Table(
    "voicemail_sends",
    metadata,
    _id(),
    _account(),
    Column("use_case_id", String(40), ForeignKey("use_cases.id"), nullable=False),
    Column("setup_id", String(40), ForeignKey("telephony_setups.id"), nullable=False),
    Column("media_id", String(40), ForeignKey("media.id"), nullable=False),
    Column("from_e164", String(20), nullable=False),
    Column("to_e164", String(20), nullable=False),
    Column("foreign_id", String(200), nullable=True),
    Column("metadata", CallerJSON, nullable=True),
    Column("send_at", UtcDateTime(), nullable=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime(), nullable=True),
    Column("claimed_until", UtcDateTime(), nullable=True),
    Column("method", String(32), nullable=True),
    Column("failure_reason", String(200), nullable=True),
    Column("skip_reason", String(200), nullable=True),
    _created(),
    _updated(),
    Column("delivered_at", UtcDateTime(), nullable=True),
    # `ringless` (listed under /v1/voicemails) or `drop` (/v1/drops)
    Column("kind", String(16), nullable=False, server_default="ringless"),
    Column("technique", String(16), nullable=True),
    Column("answered_by", String(32), nullable=True),
    Column("detection_ms", Integer, nullable=True),
    Column("beep_ms", Integer, nullable=True),
    Column("campaign_id", String(40), ForeignKey("campaigns.id"), nullable=True),
    Index("ix_voicemail_sends_due", "status", "next_attempt_at"),
    Index("ix_voicemail_sends_account_kind", "account_id", "kind", "id"),
    Index("ix_voicemail_sends_campaign", "campaign_id", "status"),
    Index("ix_voicemail_sends_account_use_case", "account_id", "use_case_id", "id"),
    Index("ix_voicemail_sends_account_setup", "account_id", "setup_id", "id"),
    Index("ix_voicemail_sends_account_to", "account_id", "to_e164", "id"),
    Index("ix_voicemail_sends_account_status", "account_id", "status", "id"),
)

send_attempts = Table(
    "send_attempts",
    metadata,
    _id(),
    _account(),
    Column("send_id", String(40), ForeignKey("voicemail_sends.id"), nullable=False),
    Column("to_e164", String(20), nullable=False),
    Column("number", Integer, nullable=False),
    Column("method", String(32), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("ended_at", UtcDateTime(), nullable=True),
    Column("sip_code", Integer, nullable=True),
    Column("duration_ms", Integer, nullable=True),
    Column("outcome", String(32), nullable=False),
    Column("reason", String(200), nullable=True),
    UniqueConstraint("send_id", "number"),
    Index("ix_send_attempts_recipient", "account_id", "to_e164", "started_at"),
)

suppressions = Table(
    "suppressions",
    metadata,
    _id(),
    _account(),
    Column("e164", String(20), nullable=False),
    Column("reason", String(500), nullable=True),
    _created(),
    UniqueConstraint("account_id", "e164"),
)

consents = Table(
    "consents",
    metadata,
    _id(),
    _account(),
    Column("e164", String(20), nullable=False),
    Column("source", String(500), nullable=False),
    Column("captured_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
    _created(),
    Index("ix_consents_account_e164", "account_id", "e164"),
)

# Caller ids an account may send from: written by the operator only (`afterbeep numbers verify`,
# the admin API), one account per number. `setup_numbers.verified` mirrors it.
verified_senders = Table(
    "verified_senders",
    metadata,
    Column("e164", String(20), primary_key=True),
    _account(),
    Column("verified_at", UtcDateTime(), nullable=False),
)

# Call flows: `flows.version` is the current one; every saved graph stays in `flow_versions`,
# so a call keeps the version it started with.
flows = Table(
    "flows",
    metadata,
    _id(),
    _account(),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    _created(),
    _updated(),
)

flow_versions = Table(
    "flow_versions",
    metadata,
    Column("flow_id", String(40), ForeignKey("flows.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("graph", CallerJSON(), nullable=False),
    _created(),
    # {"<node id>/<field>": "<media id>"}: the audio of the texts the version speaks.
    Column("speech", JSON, nullable=False, server_default=text("'{}'")),
)

# 0013_members: the people who sign in to the web pages, their sessions and sign-in links.
members = Table(
    "members",
    metadata,
    _id(),
    _account(),
    Column("email", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("user_id", String(40), nullable=True),
    Column("password_hash", String(200), nullable=True),
    _created(),
    _updated(),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    _account(),
    Column("member_id", String(40), ForeignKey("members.id"), nullable=False, index=True),
    _created(),
    Column("expires_at", UtcDateTime(), nullable=False),
)

sign_in_links = Table(
    "sign_in_links",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    _account(),
    Column("member_id", String(40), ForeignKey("members.id"), nullable=False, index=True),
    Column("next_path", String(500), nullable=False),
    _created(),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("used_at", UtcDateTime(), nullable=True),
)

# Transcription jobs: a durable outbox (leases as in `db.repos._leases`), one row per message or
# media to transcribe, written in the transaction that makes the message (or asks for it).
# Full-text search over transcripts is not in this metadata: an FTS5 index kept by triggers on
# SQLite, GIN expression indexes on PostgreSQL (migration 0012_transcripts).
transcription_jobs = Table(
    "transcription_jobs",
    metadata,
    _id(),
    _account(),
    Column("subject_kind", String(16), nullable=False),
    Column("subject_id", String(40), nullable=False),
    Column("language", String(35), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("claimed_until", UtcDateTime(), nullable=True),
    Column("last_error", String(500), nullable=True),
    _created(),
    _updated(),
    UniqueConstraint("subject_kind", "subject_id"),
    Index("ix_transcription_jobs_due", "status", "next_attempt_at"),
)

# Ring groups and queues (issue 17). Members are the contract's JSON (`user_id` / `device_id`
# name users and devices by id: no foreign key, the users table comes from another branch).
ring_groups = Table(
    "ring_groups",
    metadata,
    _id(),
    _account(),
    Column("name", String(200), nullable=False),
    Column("strategy", String(16), nullable=False),
    Column("ring_timeout_sec", Integer, nullable=False),
    Column("moh_media_id", String(40), nullable=True),
    Column("members", JSON, nullable=False),
    Column("exit_dest_kind", String(16), nullable=True),
    Column("exit_dest_id", String(40), nullable=True),
    Column("schedule_id", String(40), nullable=True),
    Column("closed_dest_kind", String(16), nullable=True),
    Column("closed_dest_id", String(40), nullable=True),
    Column("holiday_dest_kind", String(16), nullable=True),
    Column("holiday_dest_id", String(40), nullable=True),
    _created(),
    _updated(),
)

queues = Table(
    "queues",
    metadata,
    _id(),
    _account(),
    Column("name", String(200), nullable=False),
    Column("strategy", String(16), nullable=False),
    Column("agent_ring_timeout_sec", Integer, nullable=False),
    Column("max_wait_sec", Integer, nullable=False),
    Column("wrap_up_sec", Integer, nullable=False),
    Column("max_no_answer", Integer, nullable=False),
    Column("announce_position", Boolean, nullable=False),
    Column("announce_first_sec", Integer, nullable=False),
    Column("announce_interval_sec", Integer, nullable=False),
    Column("max_queued", Integer, nullable=False),
    Column("moh_media_id", String(40), nullable=True),
    Column("language", String(35), nullable=True),
    Column("members", JSON, nullable=False),
    Column("timeout_dest_kind", String(16), nullable=True),
    Column("timeout_dest_id", String(40), nullable=True),
    Column("abandon_dest_kind", String(16), nullable=True),
    Column("abandon_dest_id", String(40), nullable=True),
    Column("no_agents_dest_kind", String(16), nullable=True),
    Column("no_agents_dest_id", String(40), nullable=True),
    Column("queue_full_dest_kind", String(16), nullable=True),
    Column("queue_full_dest_id", String(40), nullable=True),
    Column("schedule_id", String(40), nullable=True),
    Column("closed_dest_kind", String(16), nullable=True),
    Column("closed_dest_id", String(40), nullable=True),
    Column("holiday_dest_kind", String(16), nullable=True),
    Column("holiday_dest_id", String(40), nullable=True),
    _created(),
    _updated(),
    # 0020_work_items: offer timeout, overflow to a fallback queue, time to live of work items
    Column("work_offer_timeout_sec", Integer, nullable=False, server_default="120"),
    Column("work_overflow_sec", Integer, nullable=False, server_default="0"),
    Column("work_fallback_queue_id", String(40), nullable=True),
    Column("work_ttl_sec", Integer, nullable=False, server_default="86400"),
)

# An agent's status set through the API (offline, available, on_break); its live state
# (waiting, offering, in_call, wrap_up) is kept in memory by the queue engine of each node.
agent_states = Table(
    "agent_states",
    metadata,
    Column("account_id", String(40), ForeignKey("accounts.id"), primary_key=True),
    Column("user_id", String(40), primary_key=True),
    Column("status", String(16), nullable=False),
    _updated(),
    # 0020_work_items: the capacity its work items and live calls share (null: the default)
    Column("capacity", Integer, nullable=True),
    # 0022_cluster_queues: what holds the agent, the same on every node: a queue caller's offer
    # (`offering`), its call (`in_call`) or its wrap-up (`wrap_up`), until `held_until` (renewed
    # by the holding node; a dead node's hold expires); when it last became free.
    Column("held_state", String(16), nullable=True),
    Column("held_ticket", String(255), nullable=True),
    Column("held_node", String(64), nullable=True),
    Column("held_until", UtcDateTime(), nullable=True),
    Column("idle_since", UtcDateTime(), nullable=True),
    # 0023_cluster_queue_state: unanswered offers in a row (`max_no_answer`), calls answered
    Column("missed_in_row", Integer, nullable=False, server_default="0"),
    Column("calls", Integer, nullable=False, server_default="0"),
)

# 0014_users: users (extensions), their devices (SIP phones), where the devices are registered,
# and the failed digest attempts that lock a device name or a source address out for a while.
users = Table(
    "users",
    metadata,
    _id(),
    _account(),
    Column("username", String(20), nullable=False),
    Column("display_name", String(200), nullable=False),
    Column("voicemail_id", String(40), ForeignKey("mailboxes.id"), nullable=True),
    Column("ring_timeout_sec", Integer, nullable=False),
    Column("ring_strategy", String(16), nullable=False),
    Column("dnd", Boolean, nullable=False),
    Column("fwd_always_kind", String(16), nullable=True),
    Column("fwd_always_id", String(40), nullable=True),
    Column("fwd_busy_kind", String(16), nullable=True),
    Column("fwd_busy_id", String(40), nullable=True),
    Column("fwd_noanswer_kind", String(16), nullable=True),
    Column("fwd_noanswer_id", String(40), nullable=True),
    Column("max_simultaneous", Integer, nullable=True),
    Column("is_agent", Boolean, nullable=False),
    Column("status", String(16), nullable=False),
    _created(),
    _updated(),
    UniqueConstraint("account_id", "username"),
    # 0018_device_outbound: the caller id (E.164) of its calls to outside numbers
    Column("out_cid_number", String(20), nullable=True),
)

devices = Table(
    "devices",
    metadata,
    _id(),
    _account(),
    Column("user_id", String(40), ForeignKey("users.id"), nullable=False, index=True),
    Column("auth_username", String(64), nullable=False, unique=True),
    Column("realm", String(200), nullable=False),
    Column("ha1_md5", String(32), nullable=False),
    Column("ha1_sha256", String(64), nullable=False),
    Column("transport", String(8), nullable=False),
    Column("ring_order", Integer, nullable=False),
    _created(),
    _updated(),
)

registrations = Table(
    "registrations",
    metadata,
    _id(),
    _account(),
    Column("device_id", String(40), ForeignKey("devices.id"), nullable=False),
    Column("user_id", String(40), nullable=False, index=True),
    Column("contact", String(500), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False, index=True),
    Column("source_host", String(64), nullable=False),
    Column("source_port", Integer, nullable=False),
    Column("transport", String(8), nullable=False),
    Column("path", JSON, nullable=False),
    Column("call_id", String(200), nullable=False),
    Column("cseq", Integer, nullable=False),
    Column("user_agent", String(200), nullable=True),
    _created(),
    _updated(),
    UniqueConstraint("device_id", "contact"),
)

# RFC 3842 message-summary subscriptions (dialogs), kept so that NOTIFYs go on after a restart
mwi_subscriptions = Table(
    "mwi_subscriptions",
    metadata,
    _id(),
    _account(),
    Column("device_id", String(40), ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column(
        "mailbox_id", String(40), ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False
    ),
    Column("message_account", String(300), nullable=False),
    Column("call_id", String(200), nullable=False),
    Column("local_tag", String(64), nullable=False),
    Column("remote_tag", String(128), nullable=False),
    Column("local_uri", String(500), nullable=False),
    Column("remote_uri", String(500), nullable=False),
    Column("remote_target", String(500), nullable=False),
    Column("route_set", JSON, nullable=False),
    Column("local_seq", Integer, nullable=False),
    Column("remote_seq", Integer, nullable=False),
    Column("source_host", String(64), nullable=False),
    Column("source_port", Integer, nullable=False),
    Column("transport", String(8), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False, index=True),
    _created(),
    _updated(),
    UniqueConstraint("call_id", "local_tag"),
)

sip_auth_failures = Table(
    "sip_auth_failures",
    metadata,
    Column("subject", String(120), primary_key=True),  # `user:<auth_username>` or `addr:<ip>`
    Column("failures", Integer, nullable=False),
    Column("window_start", UtcDateTime(), nullable=False),
    Column("locked_until", UtcDateTime(), nullable=True),
)

# -- voicemails for a team: outside contact centers and the seed 002 sequence (0021_cc_connector)

cc_connectors = Table(
    "cc_connectors",
    metadata,
    _id(),
    _account(),
    Column("name", String(200), nullable=False),
    Column("base_url", String(500), nullable=False),
    Column("call_center_api_name", String(80), nullable=False),
    Column("org_id", String(64), nullable=False),
    Column("audience", String(300), nullable=True),
    Column("provider_name", String(80), nullable=True),
    Column("fallback_queue", String(80), nullable=True),
    Column("key_ref", String(200), nullable=True),
    _created(),
    _updated(),
)

cc_deliveries = Table(
    "cc_deliveries",
    metadata,
    _id(),
    _account(),
    Column("message_id", String(40), nullable=False, unique=True),
    Column("mailbox_id", String(40), nullable=False),
    Column("queue_id", String(40), nullable=False),
    Column("connector_id", String(40), nullable=True),
    Column("call_center_id", String(40), nullable=True),
    Column("vendor_call_key", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("steps_done", JSON, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("claimed_until", UtcDateTime(), nullable=True),
    Column("transcript_wait_until", UtcDateTime(), nullable=False),
    Column("voice_call_id", String(80), nullable=True),
    Column("routed", JSON, nullable=True),
    Column("transcript_note", String(500), nullable=True),
    Column("last_error", String(500), nullable=True),
    _created(),
    _updated(),
    Index("ix_cc_deliveries_due", "status", "next_attempt_at"),
)

cc_exchanges = Table(
    "cc_exchanges",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _account(),
    Column("delivery_id", String(40), ForeignKey("cc_deliveries.id"), nullable=False, index=True),
    Column("step", String(16), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("method", String(8), nullable=False),
    Column("path", String(600), nullable=False),
    Column("request", JSON, nullable=True),
    Column("status", Integer, nullable=True),
    Column("answer", JSON, nullable=True),
    Column("error", String(500), nullable=True),
    Column("at", UtcDateTime(), nullable=False),
)

# 0019_telephony_api: call centers of the Telephony API (/telephony/v1), their voice calls with
# the transcript entries, and the JWT ids already seen (kept until the token expires).
call_centers = Table(
    "call_centers",
    metadata,
    _id(),
    _account(),
    Column("api_name", String(80), nullable=False),
    Column("org_id", String(100), nullable=False),
    Column("public_key_pem", Text, nullable=False),
    Column("routes", JSON, nullable=False),
    Column("flows", JSON, nullable=False),
    _created(),
    _updated(),
    UniqueConstraint("account_id", "api_name"),
    Index("ix_call_centers_issuer", "org_id", "api_name"),
)

voice_calls = Table(
    "voice_calls",
    metadata,
    _id(),
    _account(),
    Column("call_center_id", String(40), ForeignKey("call_centers.id"), nullable=False),
    Column("vendor_call_key", String(200), nullable=False),
    Column("to_number", String(64), nullable=False),
    Column("from_number", String(64), nullable=False),
    Column("initiation_method", String(16), nullable=False),
    Column("call_origin", String(16), nullable=True),
    Column("parent_voice_call_id", String(40), nullable=True),
    Column("queue", String(200), nullable=True),
    Column("agent", String(200), nullable=True),
    Column("call_attributes", Text, nullable=True),
    Column("participants", JSON, nullable=False),
    Column("start_time", UtcDateTime(), nullable=False),
    Column("end_time", UtcDateTime(), nullable=True),
    Column("is_active_call", Boolean, nullable=False),
    Column("recording_location", String(2000), nullable=True),
    Column("total_recording_duration", Float, nullable=True),
    Column("disconnect_reason", String(200), nullable=True),
    Column("disconnect_is_error", Boolean, nullable=True),
    Column("enqueue_time", UtcDateTime(), nullable=True),
    Column("accept_time", UtcDateTime(), nullable=True),
    Column("total_hold_duration", Float, nullable=True),
    Column("longest_hold_duration", Float, nullable=True),
    Column("number_of_holds", Integer, nullable=True),
    Column("agent_interaction_duration", Float, nullable=True),
    Column("callback_number", String(64), nullable=True),
    Column("callback_voice_call_id", String(40), nullable=True),
    Column("routed_queue_id", String(40), nullable=True),
    Column("work_item_id", String(40), nullable=True),
    _created(),
    _updated(),
    UniqueConstraint("call_center_id", "vendor_call_key"),
    Index("ix_voice_calls_account_key", "account_id", "vendor_call_key"),
)

voice_call_messages = Table(
    "voice_call_messages",
    metadata,
    Column("voice_call_id", String(40), ForeignKey("voice_calls.id"), primary_key=True),
    Column("message_id", String(200), primary_key=True),
    Column("participant_id", String(200), nullable=False),
    Column("sender_type", String(20), nullable=False),
    Column("start_ms", BigInteger, nullable=False),
    Column("end_ms", BigInteger, nullable=False),
    Column("content", Text, nullable=False),
    _created(),
)

telephony_jtis = Table(
    "telephony_jtis",
    metadata,
    Column("call_center_id", String(40), primary_key=True),
    Column("jti", String(200), primary_key=True),
    Column("expires_at", UtcDateTime(), nullable=False, index=True),
)

# 0020_work_items: routed voice calls waiting for agents (issue 18), the history of their
# offers, and agents' bearer tokens for /v1/agents/me (only a SHA-256 of the secret is kept).
work_items = Table(
    "work_items",
    metadata,
    _id(),
    _account(),
    Column("voice_call_id", String(40), nullable=False),
    Column("queue_id", String(40), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("weight", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("agent_id", String(40), nullable=True),
    Column("offer_id", String(40), nullable=True),
    Column("offer_expires_at", UtcDateTime(), nullable=True),
    Column("declined_by", JSON, nullable=False),
    Column("reason", String(200), nullable=True),
    Column("notes", Text, nullable=True),
    Column("queued_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("ended_at", UtcDateTime(), nullable=True),
    _created(),
    _updated(),
    Index("ix_work_items_state", "state"),
    Index("ix_work_items_account_id_voice_call_id", "account_id", "voice_call_id"),
)

work_item_offers = Table(
    "work_item_offers",
    metadata,
    _id(),
    _account(),
    Column("work_item_id", String(40), ForeignKey("work_items.id"), nullable=False, index=True),
    Column("agent_id", String(40), nullable=False),
    Column("queue_id", String(40), nullable=False),
    Column("status", String(16), nullable=False),
    Column("offered_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("ended_at", UtcDateTime(), nullable=True),
)

agent_tokens = Table(
    "agent_tokens",
    metadata,
    _id(),
    _account(),
    Column("user_id", String(40), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
    _created(),
)

# 0022_phone_menu: wrong PINs at the phone menu, per mailbox and calling source (`*`: all
# sources of the mailbox together); a lock grows with each one (`lockouts`).
mailbox_pin_failures = Table(
    "mailbox_pin_failures",
    metadata,
    Column("mailbox_id", String(40), ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True),
    Column("source", String(120), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("window_start", UtcDateTime(), nullable=False),
    Column("locked_until", UtcDateTime(), nullable=True),
    Column("lockouts", Integer, nullable=False),
)

# 0022_cluster_queues: the callers waiting in queues, on whichever node (ticket: the call id);
# `expires_at` is renewed by the caller's node, so a dead node's callers leave the line.
queue_callers = Table(
    "queue_callers",
    metadata,
    Column("ticket", String(255), primary_key=True),
    Column("queue_id", String(40), nullable=False),
    Column("account_id", String(40), nullable=False),
    Column("node_id", String(64), nullable=False),
    Column("joined_at", UtcDateTime(), nullable=False),
    Column("offered", Boolean, nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Index("ix_queue_callers_queue_joined", "queue_id", "joined_at"),
)

# 0023_cluster_queue_state: what a queue's strategy and statistics keep, the same on every node:
# offers made (a claim checks it did not change since its node looked), the agent offered last
# (round robin), callers answered, abandoned and timed out.
queue_tallies = Table(
    "queue_tallies",
    metadata,
    Column("queue_id", String(40), primary_key=True),
    Column("account_id", String(40), nullable=False),
    Column("offers", Integer, nullable=False),
    Column("last_offered", String(40), nullable=True),
    Column("answered", Integer, nullable=False),
    Column("abandoned", Integer, nullable=False),
    Column("timed_out", Integer, nullable=False),
)
