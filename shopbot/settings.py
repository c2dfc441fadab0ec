"""One typed settings object, read from the environment (prefix ``SHOPBOT_``) or a ``.env`` file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOPBOT_", env_file=".env", extra="ignore")

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis: broker, state, message log")
    database_url: str = Field(
        "sqlite:///var/shopbot.db", description="transcripts; SQLite file or postgresql+psycopg://..."
    )
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = Field(None, description="URL the web chat is reached at, when behind a proxy")
    models_dir: Path = Field(
        PACKAGE_ROOT / "models", description="holds intent/ and sentiment/, or versions/ and current (nlu.versions)"
    )
    models_check_s: float = Field(
        5.0, gt=0, description="how often an NLU worker reads models/current to switch to a promoted version"
    )
    device: str | None = Field(None, description="cuda, cpu; default: cuda when present")
    policies_file: Path | None = Field(None, description="dialogue policies YAML; default: the packaged one")
    agent_token: SecretStr | None = Field(
        None, description="an agent-role token for the human-queue API (from before roles; see python -m admin tokens)"
    )
    # Admin: the key that seals stored channel credentials (python -m admin keys generate)
    secret_key: SecretStr | None = Field(None, description="32 bytes, URL-safe base64; encrypts stored credentials")
    secret_key_file: Path | None = Field(None, description="a file holding the secret key (start.sh makes one)")
    previous_secret_keys: SecretStr | None = Field(
        None, description="comma-separated older keys, still accepted for decryption while rotating"
    )
    # The public web endpoints
    web_allowed_origins: str | None = Field(
        None, description="comma-separated origins (https://shop.example.com) whose pages may use the chat widget"
    )
    rate_session_per_min: int = Field(20, ge=1, description="messages one web chat session may send a minute")
    rate_ip_per_min: int = Field(120, ge=1, description="requests to the public web endpoints per client IP a minute")
    sockets_per_ip: int = Field(20, ge=1, description="open chat WebSockets one client IP may hold on a gateway")
    sockets_per_session: int = Field(4, ge=1, description="open chat WebSockets one chat session may hold (tabs)")
    gateway_redis_connections: int = Field(
        3,
        ge=3,
        le=129,
        description="Redis connections of a gateway process in all, whatever its load and sockets: one reads the "
        "logs of every open socket, the rest are shared by its requests (they wait for a free one)",
    )
    trust_forwarded_for: bool = Field(
        False, description="behind your own proxy: take the client IP from the last X-Forwarded-For hop"
    )
    rate_auth_failures_per_min: int = Field(10, ge=1, description="wrong tokens per client IP a minute, then 429")
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    nlu_int8: bool = Field(
        False, description="int8 weights for the NLU models on CPU: about 2.2x faster, a little less accurate"
    )
    nlu_batch_size: int = Field(32, ge=1, le=512)
    nlu_flush_interval_s: float = Field(0.02, gt=0, le=5)
    conversation_ttl_s: int = Field(30 * 24 * 3600, ge=60, description="idle conversations expire after this")
    empty_session_ttl_s: int = Field(
        24 * 3600, ge=60, description="a session that never sent a message expires after this"
    )
    log_max_messages: int = Field(
        2000, ge=50, description="a conversation keeps its newest messages in Redis (all of them stay in SQL)"
    )
    sweep_interval_s: float = Field(2.0, gt=0, description="how often a worker re-queues stalled conversations")
    stall_after_s: float = Field(10.0, gt=0, description="a message not handled after this is re-queued")
    shutdown_timeout_s: float = Field(
        5.0, gt=0, description="a stopping gateway closes its sockets (1001) and waits this long for requests"
    )
    # Metrics for operators (docs/metrics.md): the gateway serves GET /metrics on its own port
    metrics_token: SecretStr | None = Field(
        None, description="set: every /metrics (gateway and workers) needs Authorization: Bearer <this token>"
    )
    metrics_port: int = Field(
        0, ge=0, le=65535, description="a worker's own /metrics port; 0: none (give each worker on a host its own)"
    )
    metrics_addr: str = Field("127.0.0.1", description="the address a worker's /metrics listens on (0.0.0.0: all)")

    # Telegram (shoppers)
    telegram_bot_token: SecretStr | None = Field(None, description="the bot's token from @BotFather")
    telegram_webhook_secret: SecretStr | None = Field(
        None, description="secret token Telegram sends with every webhook call (setWebhook secret_token)"
    )
    telegram_api_base_url: str = Field("https://api.telegram.org/bot", description="Bot API URL; the token follows")
    # Slack (shoppers and the agents' desk)
    slack_bot_token: SecretStr | None = Field(None, description="xoxb-... bot token")
    slack_signing_secret: SecretStr | None = Field(None, description="the Slack app's signing secret")
    slack_api_base_url: str = Field("https://slack.com/api/", description="Web API URL")
    slack_agent_channel: str | None = Field(None, description="channel id where hand-off cards are posted")
    slack_desk_agents: str | None = Field(
        None, description="Slack user ids (comma-separated) who may work the queue; empty: the agents' channel members"
    )
    slack_team_id: str | None = Field(
        None, description="the desk's workspace (T0123ABCD): desk actions from another workspace are refused"
    )
    # "Add to Slack" (OAuth install): the Slack app's client id and secret (Basic Information > App Credentials)
    slack_client_id: str | None = Field(None, description="the Slack app's client id; set: /channels/slack/install")
    slack_client_secret: SecretStr | None = Field(None, description="the Slack app's client secret")
    slack_scopes: str = Field(
        "app_mentions:read,channels:history,channels:read,chat:write,commands,groups:read,im:history",
        description="bot scopes asked for at install, comma-separated",
    )
    slack_authorize_url: str = Field(
        "https://slack.com/oauth/v2/authorize", description="where the install link sends the admin"
    )
    slack_install_teams: str | None = Field(
        None,
        description="workspaces (T0123ABCD, comma-separated) that may be connected by Add to Slack besides "
        "SHOPBOT_SLACK_TEAM_ID; with neither set, any workspace the admin installs in",
    )

    @property
    def slack_allowed_teams(self) -> frozenset[str] | None:
        """The workspaces an install may be saved for (None: any): SHOPBOT_SLACK_TEAM_ID and
        SHOPBOT_SLACK_INSTALL_TEAMS, when either is set."""
        teams = {t.strip() for t in (self.slack_install_teams or "").split(",") if t.strip()}
        if self.slack_team_id:
            teams.add(self.slack_team_id)
        return frozenset(teams) or None

    # Where orders are read from: the shop data tables, or the shop's own JSON API
    order_source: Literal["sql", "http"] = "sql"
    order_api_url: str | None = Field(None, description="URL template with {order_number}")
    order_api_token: SecretStr | None = Field(None, description="sent as Authorization: Bearer")
    order_api_fields: dict[str, str] = Field(
        default_factory=dict,
        description='JSON: our field -> dotted path in the API\'s answer, e.g. {"status": "state"}',
    )
    order_api_status_map: dict[str, str] = Field(
        default_factory=dict, description='JSON: the API\'s status -> ours, e.g. {"in_transit": "shipped"}'
    )
    order_api_timeout_s: float = Field(5.0, gt=0, le=60)
    # Optional LLM (any OpenAI-compatible chat completions endpoint): rephrases the bot's answers and
    # answers open questions from retrieved facts only; without it the templates are used.
    llm_base_url: str | None = Field(None, description="e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1")
    llm_model: str | None = Field(None, description="model name the endpoint expects")
    llm_api_key: SecretStr | None = Field(None, description="sent as Authorization: Bearer")
    llm_timeout_s: float = Field(8.0, gt=0, le=120, description="after this the template answer is sent")
    handoff_busy_after_s: float = Field(
        300.0, gt=0, description="a queued conversation nobody claims within this gets a 'keep waiting?' message"
    )

    @field_validator(
        "public_url", "device", "policies_file", "agent_token", "secret_key", "secret_key_file",
        "previous_secret_keys", "web_allowed_origins", "telegram_bot_token", "telegram_webhook_secret",
        "slack_bot_token", "slack_signing_secret", "slack_agent_channel", "slack_desk_agents", "slack_team_id",
        "slack_client_id", "slack_client_secret", "slack_install_teams",
        "order_api_url",
        "order_api_token", "llm_base_url", "llm_model", "llm_api_key", "metrics_token", mode="before",
    )  # fmt: skip
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``VAR=`` (as docker compose passes an unset ``${VAR:-}``) means not set."""
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def web_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/") + "/"


class SettingsError(SystemExit):
    """A setting from the environment that cannot be used: the process stops with its name and the reason."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "SHOPBOT_" + "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"shopbot: setting {name}: {err['msg']}")  # not its value: it may be a secret
        raise SettingsError("\n".join(lines)) from None
