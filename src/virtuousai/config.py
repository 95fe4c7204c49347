"""Settings, read once from the environment (prefix ``VAI_``).

Every default runs with nothing installed beyond the package: a SQLite file and the lake under ``./var``,
and a generated local master key. The README's configuration table lists every field here.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from virtuousai.sizes import parse_size

# The event loop of every vai process (``virtuousai/eventloop.py``): auto (uvloop where it exists), uvloop, asyncio.
LoopChoice = Literal["auto", "uvloop", "asyncio"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VAI_", extra="ignore")

    data_dir: Path = Field(default=Path("./var"), description="Root of the SQLite file, lake and key file.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Default: sqlite+aiosqlite:///<data_dir>/vai.db. "
        "postgresql://… URLs are accepted and use asyncpg.",
    )
    master_key_file: Path | None = Field(default=None, description="Default: <data_dir>/master.key.")
    master_key: str | None = Field(default=None, description="Base64 key-encryption key (overrides the file).")
    key_provider: Literal["file", "env", "keyring"] | None = Field(
        default=None,
        description="Key-encryption keys for connection secrets: the master key file, VAI_MASTER_KEY, or the "
        "versioned keyring under <data_dir>/keys (rotation). Default: env when VAI_MASTER_KEY is set, else file.",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["plain", "json"] = "plain"
    event_loop: LoopChoice = Field(
        default="auto",
        description="The event loop of vai processes: auto is uvloop where it exists (Linux, macOS), else asyncio.",
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Largest request body the API reads; larger ones answer 413 before they are read whole.",
    )
    auth_cache_ttl_s: float = Field(
        default=5.0,
        ge=0,
        description="How long a process trusts an API key it verified, without reading it again; 0: never. "
        "Revocations empty it at once (docs/api.md).",
    )
    # Workers: None means "1 on SQLite, 0 on PostgreSQL" (resolved in `vai serve`).
    workers: int | None = Field(default=None, ge=0)
    create_demo_org: bool = Field(default=False, description="Create the demo organization on first start.")
    # Data: lake queries and extraction. docs/data.md explains each knob.
    query_row_cap: int = Field(default=10_000, ge=1, description="Most rows POST /query (and agents) return.")
    query_timeout_s: float = Field(default=30.0, gt=0, description="Lake queries are interrupted after this long.")
    query_threads: int = Field(default=2, ge=1, description="DuckDB threads per lake query.")
    query_memory_limit: str = Field(
        default="1GB",
        description="DuckDB memory limit of a lake query; its query process's address space is capped at its start "
        "plus 1.5 times this plus 256 MB (and room for its organizations' DuckDB instances).",
    )
    query_processes: int = Field(
        default=3,
        ge=1,
        description="Query processes per vai process: each runs one lake query at a time; one organization holds at "
        "most all but one.",
    )
    query_result_max_bytes: int = Field(
        default=32 * 1024 * 1024, ge=1024, description="Most bytes of JSON rows one lake query may return."
    )
    flashboard_tile_row_cap: int = Field(
        default=5_000,
        ge=1,
        description="Most rows one flashboard tile returns, renders and caches (docs/flashboards.md).",
    )
    transform_row_cap: int = Field(default=50_000_000, ge=1, description="Most rows one sql_transform may write.")
    transform_timeout_s: float = Field(
        default=3600.0, gt=0, description="A sql_transform's query is stopped (its process killed) after this long."
    )
    transform_memory_limit: str = Field(
        default="4GB", description="DuckDB memory limit of a sql_transform (its own process, capped the same way)."
    )
    filesystem_source_roots: Annotated[tuple[Path, ...], NoDecode] = Field(
        default=(),
        description="Folders dlt_extract's filesystem source may read (each organization's own "
        "<data_dir>/files/<org> is always allowed); comma-separated in env.",
    )

    @field_validator("query_memory_limit", "transform_memory_limit")
    @classmethod
    def _check_size(cls, value: str) -> str:
        parse_size(value)  # a ValueError names the value
        return value

    @field_validator("filesystem_source_roots", mode="before")
    @classmethod
    def _split_source_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(Path(part.strip()) for part in value.split(",") if part.strip())
        return value

    http_allow_loopback: bool = Field(
        default=False,
        description="Let outbound HTTP (http_request) reach loopback addresses: for tests' own servers only, never "
        "in production. Private, link-local and metadata addresses stay refused. docs/http.md.",
    )
    # Runtime (workers, leases, watchdog). docs/runtime.md explains each knob.
    lease_s: float = Field(default=30.0, gt=0, description="Lease a worker holds on a run; renewed every third.")
    poll_interval_s: float = Field(default=1.0, gt=0, description="Idle workers look for runs at least this often.")
    cancel_grace_s: float = Field(
        default=10.0, ge=0, description="After a cancel or timeout, how long a run may take to stop by itself."
    )
    per_org_concurrency: int = Field(default=20, ge=1, description="Most runs of one organization RUNNING at once.")
    claim_batch_size: int = Field(default=10, ge=1, description="Most runs a worker claims in one statement.")
    worker_concurrency: int = Field(default=4, ge=1, description="Runs one worker executes at once.")
    drain_timeout_s: float = Field(
        default=30.0, ge=0, description="On shutdown, how long in-flight runs may finish before they are released."
    )
    # Automations (docs/automations.md): completions drive runs; the sweep only rescues lost wake-ups.
    automation_sweep_interval_s: float = Field(
        default=30.0, gt=0, description="How often unfinished automation runs are re-evaluated as a safety net."
    )
    cron_interval_s: float = Field(default=15.0, gt=0, description="How often the cron scheduler looks for due ticks.")
    orchestration_kept_states: bool = Field(
        default=True,
        description="Each process keeps the state its last pass of a parent run left, for the next pass "
        "(docs/automations.md, 'Fast paths'); off only to measure without.",
    )
    orchestration_fast_path: bool = Field(
        default=True,
        description="A chain's child (an automation step, an agent run's model or tool call) finishes together with "
        "its parent's next pass and hands its slot to the next child (docs/automations.md, 'Fast paths'); off only "
        "to measure without.",
    )
    automation_max_fan_out: int = Field(
        default=50_000,
        ge=1,
        description="Most ActionRuns one for_each step may start; more fails the run (fan-out-too-large).",
    )
    # Agent runs (docs/agents.md, "Runs"): the limits every run is held to, in the runtime.
    agent_max_tool_calls: int = Field(
        default=50, ge=1, description="Most tool calls one agent run may make; one more fails it (tool_call_limit)."
    )
    agent_timeout_s: float = Field(
        default=540.0,
        gt=0,
        description="Most seconds an agent run may be RUNNING (waiting for an approval does not count): timeout.",
    )
    agent_max_depth: int = Field(
        default=3, ge=0, description="How deep delegation (call_agent) may go; deeper is refused (delegation_refused)."
    )
    agent_tool_result_max_chars: int = Field(
        default=20_000, ge=100, description="A tool's output is cut to this many characters before the model sees it."
    )
    fetch_page_max_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="fetch_page reads at most this many bytes of a page; a larger page is cut (and says so).",
    )
    # The CLI. Its client commands (vai run, runs, query, connections) call a server over HTTP, local or remote.
    url: str = Field(default="http://127.0.0.1:8000", description="The server the CLI's client commands call.")
    api_key: SecretStr | None = Field(default=None, description="The API key the CLI's client commands send.")
    follow_notice_s: float = Field(
        default=5.0,
        gt=0,
        description="With --follow: after this long with nothing of the run claimed, say that no worker runs it.",
    )
    kind_modules: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Extra modules to import for action kinds (plugins, tests); comma-separated in env."
    )

    @field_validator("kind_modules", mode="before")
    @classmethod
    def _split_kind_modules(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @property
    def heartbeat_interval_s(self) -> float:
        """Workers renew their leases this often: a third of the lease, so two missed beats still hold it."""
        return self.lease_s / 3

    @cached_property
    def resolved_database_url(self) -> str:
        return normalize_database_url(self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'vai.db'}")

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def resolved_master_key_file(self) -> Path:
        return self.master_key_file or self.data_dir / "master.key"

    @property
    def keys_dir(self) -> Path:
        """The versioned keyring (``VAI_KEY_PROVIDER=keyring``): ``v1.key``, ``v2.key``, … and retired markers."""
        return self.data_dir / "keys"

    @property
    def resolved_key_provider(self) -> Literal["file", "env", "keyring"]:
        return self.key_provider or ("env" if self.master_key else "file")

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


def normalize_database_url(url: str) -> str:
    """Map plain driver names to the async drivers we ship (``postgresql://`` → asyncpg, ``sqlite://`` → aiosqlite)."""
    for plain, async_ in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return async_ + url[len(plain) :]
    return url


def get_settings() -> Settings:
    return Settings()
