"""Settings read from AFTERBEEP_* environment variables (the names are a public contract)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from afterbeep.domain.netpolicy import NetworkPolicy, parse_networks


def split_host_port(addr: str, default_port: int) -> tuple[str, int]:
    """Split `host:port` (or `[v6]:port`, or a bare host) into its parts."""
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port else default_port
    host, sep, port = addr.rpartition(":")
    if not sep:
        return addr, default_port
    return host, int(port)


class SmtpTarget:
    """A parsed AFTERBEEP_SMTP_URL: `smtp://`, `smtp+starttls://` or `smtps://`, optional user:password."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        schemes = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}
        if parts.scheme not in schemes:
            raise ValueError(f"AFTERBEEP_SMTP_URL scheme must be one of {sorted(schemes)}")
        if not parts.hostname:
            raise ValueError("AFTERBEEP_SMTP_URL needs a host")
        self.host: str = parts.hostname
        self.port: int = parts.port or schemes[parts.scheme]
        self.starttls = parts.scheme == "smtp+starttls"
        self.use_tls = parts.scheme == "smtps"
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AFTERBEEP_", extra="ignore")

    data_dir: Path = Path("./var")
    database_url: str = ""
    storage_url: str = ""
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    http_addr: str = "127.0.0.1:8080"
    sip_addr: str = "127.0.0.1:5060"
    sip_advertise: str | None = None
    sip_realm: str = Field(default="afterbeep", min_length=1, max_length=200)
    sip_auth_lockout_seconds: float = Field(default=600.0, ge=1)
    sip_auth_max_failures: int = Field(default=20, ge=1)
    sip_reap_seconds: float = Field(default=30.0, gt=0)
    # offered in this order; some MD5-only phones read only the first challenge
    sip_digest_algorithms: str = Field(default="SHA-256,MD5", pattern=r"^(SHA-256|MD5)(,(SHA-256|MD5))?$")
    sip_min_expires: int = Field(default=60, ge=1, le=3600)  # tests lower it to see reaping
    # Message waiting: NOTIFY registered devices that did not subscribe (as Asterisk does)
    sip_mwi_unsolicited: bool = True
    rtp_port_min: int = 20000
    rtp_port_max: int = 30000
    max_calls: int = Field(default=600, ge=1)
    rtp_timeout_seconds: float = Field(default=30.0, ge=0)
    # RTP of recordings read by a native thread (when the extension is built) or on the loop
    media_receive: Literal["native", "python"] = "native"
    drain_seconds: float = Field(default=30.0, ge=0)
    silence_threshold: int = Field(default=200, ge=0, le=32767)
    public_url: str = ""
    smtp_url: str = "smtp://127.0.0.1:25"
    smtp_from: str = "afterbeep@localhost"
    secret_key: SecretStr = SecretStr("")
    # The operator's key for /v1/admin (verifying caller ids); "" keeps the admin API closed.
    admin_key: SecretStr = SecretStr("")
    default_region: str = "US"
    max_upload_mb: int = Field(default=50, ge=1)
    max_body_kb: int = Field(default=256, ge=1)
    max_media_seconds: int = Field(default=600, ge=1)
    media_quota_mb: int = Field(default=1024, ge=1)
    log_json: bool = False
    log_level: str = "INFO"
    webhook_timeout_seconds: float = 10.0
    webhook_max_attempts: int = 8
    webhook_allowed_hosts: str = ""
    # CIDR list of non-public ranges that webhooks, trunks and deposit URIs may reach.
    allow_private_networks: str = ""
    deposit_peers: str = ""
    # Deposit peers that authenticate by SIP digest: "name:password,..." (parsed at start-up by
    # telephony.deposit_receiver.parse_users; a password may hold ":" but not ",").
    deposit_users: SecretStr = SecretStr("")
    # "process": `serve` stores finished recordings and sends their emails from a child process
    # at idle CPU priority (afterbeep.postcall); "inline": on the event loop that takes calls.
    postcall: Literal["process", "inline"] = "process"
    delivery_enabled: bool = True
    delivery_batch_size: int = Field(default=20, ge=1)
    delivery_ring_timeout_seconds: float = Field(default=45.0, gt=0)
    delivery_idle_seconds: float = Field(default=30.0, gt=0)
    # Speech to text (afterbeep.asr): "on"/"off"; an operator's CTranslate2 Whisper model
    # directory (with a SHA256SUMS file) instead of the bundled ones; CPU threads per message.
    transcribe: bool = True
    asr_model_dir: Path | None = None
    asr_threads: int = Field(default=1, ge=1, le=64)
    # Transcription jobs (afterbeep.transcription.worker): messages transcribed at once, jobs
    # waiting past which new messages are `skipped`; how long a new-message email waits.
    transcribe_concurrency: int = Field(default=1, ge=1, le=16)
    transcribe_queue_max: int = Field(default=1000, ge=1)
    email_wait_transcript_seconds: float = Field(default=30.0, ge=0, le=3600)
    # Answering machine detection of drops by the words of the first turn (afterbeep.asr):
    # "on"/"off"; first turns transcribed at once on this node (past it, timing alone decides);
    # the language drop recipients answer in (cue lists: en, es, fr, de).
    amd_words: bool = True
    amd_words_concurrency: int = Field(default=2, ge=1, le=64)
    amd_language: str = "en"
    # Wrong PINs at the phone menu: this many (per mailbox and caller) lock the mailbox for
    # pin_lock_seconds, doubled at each lock that follows.
    pin_max_failures: int = Field(default=5, ge=2)
    pin_lock_seconds: float = Field(default=300.0, gt=0)
    # Voicemails for a team (issue 18, the seed 002 sequence): how long a message's sequence
    # waits for its transcript before going on without it, the tries of a failing step (with a
    # backoff from the base), how often the worker looks for messages stored by other processes.
    cc_transcript_wait_seconds: float = Field(default=300.0, ge=0, le=86_400)
    cc_max_attempts: int = Field(default=8, ge=1, le=100)
    cc_retry_base_seconds: float = Field(default=5.0, gt=0, le=3600)
    cc_idle_seconds: float = Field(default=5.0, gt=0, le=3600)
    # Callbacks (issue 18): how long the agent's phones ring, then the customer's.
    callback_agent_ring_seconds: float = Field(default=30.0, gt=0)
    callback_customer_ring_seconds: float = Field(default=45.0, gt=0)
    # The Telephony API (/telephony/v1): the `aud` its RS256 tokens must carry when they carry
    # one ("": the public base URL, AFTERBEEP_PUBLIC_URL), and their longest lifetime in
    # seconds (exp - iat; the vendor's demo connector signs for 4 hours).
    telephony_jwt_audience: str = ""
    telephony_jwt_max_ttl: float = Field(default=4 * 3600.0, gt=0, le=7 * 86_400)
    # Admission by health (afterbeep.domain.admission): besides max_calls, new INVITEs get 503
    # while the event loop lags, or prompts leave late, past these (ms; more than half of the
    # last 10 samples; 0 = off), until the median was at most half of them for
    # admission_calm_seconds; a node with fewer than 10 calls in progress always takes one more.
    admission_lag_ms: float = Field(default=50.0, ge=0)
    admission_prompt_late_ms: float = Field(default=50.0, ge=0)
    admission_calm_seconds: float = Field(default=0.5, ge=0)
    # Admission that predicts: the calls that fit under this share of the event loop thread's
    # time, by the cost per call it learns (0 = off); and on a loaded node at most this many new
    # calls in any 100 ms (0 = off).
    admission_loop_busy_percent: float = Field(default=75.0, ge=0, le=100)
    admission_answers_per_100ms: int = Field(default=6, ge=0)
    # Admission by the CPU, not only the loop thread: the calls that fit under this share of the
    # CPU the process could have (its own, all threads, plus what is idle on its cores; 0 = off),
    # and 503 while the loop thread waits for a CPU more than this share of the time (0 = off).
    admission_cpu_percent: float = Field(default=90.0, ge=0, le=100)
    admission_cpu_wait_percent: float = Field(default=40.0, ge=0, le=100)
    # Prompts' RTP: "native", by the C thread of telephony/media/_pace.c (the Python pacer when
    # the extension is not built), or "python", on the event loop.
    media_pacer: Literal["native", "python"] = "native"
    # This node's name in a cluster behind Kamailio (issue 23; afterbeep.cluster): "" for a
    # service alone. Letters, digits, "-" and "_"; it names the node's spool and its leases.
    node_id: str = Field(default="", max_length=40, pattern=r"^([A-Za-z0-9][A-Za-z0-9_-]*)?$")
    # The proxies in front of this node (Kamailio), comma-separated CIDRs: for what they relay,
    # digest failures are counted against the address they received it from (the client's Via).
    sip_trusted_proxies: str = ""

    def allowed_webhook_hosts(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.webhook_allowed_hosts.split(",") if h.strip())

    def network_policy(self) -> NetworkPolicy:
        return NetworkPolicy.parse(self.allow_private_networks)

    @field_validator("allow_private_networks")
    @classmethod
    def _check_networks(cls, value: str) -> str:
        NetworkPolicy.parse(value)
        return value

    @field_validator("sip_trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        parse_networks(value)
        return value

    @field_validator("smtp_url")
    @classmethod
    def _check_smtp(cls, value: str) -> str:
        SmtpTarget(value)
        return value

    @field_validator("admin_key")
    @classmethod
    def _check_admin_key(cls, value: SecretStr) -> SecretStr:
        if 0 < len(value.get_secret_value()) < 32:
            raise ValueError("AFTERBEEP_ADMIN_KEY must be at least 32 characters")
        return value

    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.resolved_data_dir() / 'afterbeep.db'}"

    def resolved_storage_url(self) -> str:
        return self.storage_url or f"file://{self.resolved_data_dir() / 'objects'}"

    def resolved_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host, port = split_host_port(self.http_addr, 8080)
        return f"http://{host}:{port}"

    def resolved_secret_key(self) -> bytes:
        """The signing key; generated once and kept in the data dir when not configured."""
        configured = self.secret_key.get_secret_value()
        if configured:
            return configured.encode()
        path = self.resolved_data_dir() / "secret.key"
        if not path.exists():
            import secrets

            path.parent.mkdir(parents=True, exist_ok=True)
            fd_path = path.with_suffix(".tmp")
            fd_path.write_text(secrets.token_urlsafe(48))
            fd_path.chmod(0o600)
            fd_path.replace(path)
        return path.read_text().strip().encode()

    def smtp(self) -> SmtpTarget:
        return SmtpTarget(self.smtp_url)
