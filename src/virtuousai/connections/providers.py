"""The provider catalog, as data: each provider's non-secret config schema and its secret schema.

Config is stored in the clear and returned by the API; secrets are sealed (``crypto/envelope.py``) and never
returned. Database and HTTP configs forbid unknown fields so typos surface as 422s. LLM configs allow extra fields:
the model layer (``llm/``) reads the documented ones (``models``, ``order``, ``prices``) and may add its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError, model_validator

from virtuousai.errors import FieldError, ValidationFailed

Category = Literal["database", "http", "llm", "search"]


def _secret(*, optional: bool = False) -> Any:
    return Field(default=None if optional else ..., min_length=1, max_length=16_384)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- databases ------------------------------------------------------------------------------------------------


class _ServerDatabaseConfig(StrictModel):
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65_535)
    database: str = Field(min_length=1, max_length=255)
    username: str = Field(min_length=1, max_length=255)
    options: dict[str, str] = Field(
        default_factory=dict, description='Driver options, e.g. {"sslmode": "require"} (PostgreSQL).'
    )


class PostgresConfig(_ServerDatabaseConfig):
    port: int = Field(default=5432, ge=1, le=65_535)


class MySQLConfig(_ServerDatabaseConfig):
    port: int = Field(default=3306, ge=1, le=65_535)


class PasswordSecrets(StrictModel):
    password: str = _secret()


class FileDatabaseConfig(StrictModel):
    path: str = Field(min_length=1, max_length=4096, description="Path of the database file on the server.")


class NoSecrets(StrictModel):
    pass


# --- HTTP -----------------------------------------------------------------------------------------------------


class HttpApiConfig(StrictModel):
    base_url: AnyHttpUrl
    auth_type: Literal["none", "bearer", "header", "basic", "query"] = "bearer"
    header_name: str | None = Field(default=None, max_length=200, description="For auth_type=header.")
    query_param: str | None = Field(default=None, max_length=200, description="For auth_type=query.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra non-secret headers.")

    @model_validator(mode="after")
    def _auth_fields(self) -> HttpApiConfig:
        if self.auth_type == "header" and not self.header_name:
            raise ValueError("header_name is required when auth_type is 'header'")
        if self.auth_type == "query" and not self.query_param:
            raise ValueError("query_param is required when auth_type is 'query'")
        return self


class HttpApiSecrets(StrictModel):
    token: str | None = _secret(optional=True)
    username: str | None = _secret(optional=True)
    password: str | None = _secret(optional=True)


class RestApiConfig(StrictModel):
    """For dlt's REST API source (``dlt.sources.rest_api``): the client part of its config."""

    base_url: AnyHttpUrl
    headers: dict[str, str] = Field(default_factory=dict)
    paginator: str | dict[str, Any] | None = Field(
        default=None, description="A dlt paginator: a name ('auto', 'json_link', …) or a config {type: …, …}."
    )
    auth_type: Literal["none", "bearer", "api_key", "http_basic"] = "none"
    api_key_name: str = Field(default="Authorization", max_length=200, description="For auth_type=api_key.")
    api_key_location: Literal["header", "query"] = "header"


class RestApiSecrets(StrictModel):
    token: str | None = _secret(optional=True)
    api_key: str | None = _secret(optional=True)
    username: str | None = _secret(optional=True)
    password: str | None = _secret(optional=True)


# --- LLMs and search ------------------------------------------------------------------------------------------


class PriceOverride(BaseModel):
    model_config = ConfigDict(extra="allow")
    input_per_mtok: float = Field(ge=0, description="USD per million input tokens.")
    output_per_mtok: float = Field(ge=0, description="USD per million output tokens.")


class LlmConfig(BaseModel):
    """Open on purpose (extra fields allowed) so the model layer can grow it; these fields are documented."""

    model_config = ConfigDict(extra="allow")
    models: list[str] = Field(default_factory=list, description="Model names offered; the first is the default.")
    order: int | None = Field(
        default=None, ge=1, le=100, description="Fallback priority: 1 primary, 2 secondary, 3 tertiary, …"
    )
    prices: dict[str, PriceOverride] = Field(default_factory=dict, description="Per-model price overrides.")
    timeout_s: float | None = Field(default=None, gt=0, le=3600, description="Per attempt.")
    max_retries: int | None = Field(default=None, ge=0, le=10, description="The SDK's own retries (default 0).")


class OpenAIConfig(LlmConfig):
    base_url: AnyHttpUrl | None = Field(default=None, description="Default: the provider's public API.")
    organization: str | None = None


class AnthropicConfig(LlmConfig):
    base_url: AnyHttpUrl | None = Field(default=None, description="Default: the provider's public API.")


class OpenAICompatibleConfig(LlmConfig):
    base_url: AnyHttpUrl = Field(description="e.g. http://127.0.0.1:11434/v1 for Ollama.")


class ApiKeySecrets(StrictModel):
    api_key: str = _secret()


class OptionalApiKeySecrets(StrictModel):
    api_key: str | None = _secret(optional=True)


class ScriptedToolCall(StrictModel):
    tool: str = Field(min_length=1, max_length=200, description="The tool's name, as the agent spec lists it.")
    args: dict[str, Any] = Field(default_factory=dict, description="The call's arguments.")
    id: str | None = Field(default=None, min_length=1, max_length=200, description="Default: call_<turn>_<n>.")


class ScriptedTurn(StrictModel):
    """One answer of the scripted model (``llm/scripted.py``): text, tool calls, or both."""

    text: str | None = Field(default=None, max_length=100_000)
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)
    expect_prompt: str | None = Field(default=None, description="Text the latest user prompt must contain.")

    @model_validator(mode="after")
    def _says_something(self) -> ScriptedTurn:
        if self.text is None and not self.tool_calls:
            raise ValueError("a scripted turn needs text, tool calls, or both")
        return self


class ScriptedConfig(LlmConfig):
    """The scripted offline model: request ``n`` of a conversation (``n`` model responses so far) gets turn ``n``."""

    turns: list[ScriptedTurn] = Field(min_length=1, max_length=1000)
    models: list[str] = Field(default_factory=lambda: ["scripted"], description="Default: ['scripted'].")


class TavilyConfig(StrictModel):
    base_url: AnyHttpUrl | None = Field(default=None, description="Default: the provider's public API.")
    search_depth: Literal["basic", "advanced"] = "basic"
    max_results: int = Field(default=5, ge=1, le=20, description="web_search's default; Tavily returns at most 20.")
    timeout_s: float = Field(default=30.0, gt=0, le=120, description="For one search, the whole exchange.")


# --- the catalog ----------------------------------------------------------------------------------------------

# (config, secrets) → problems with the combination, as (loc under the body, message).
CrossCheck = Callable[[Mapping[str, Any], Mapping[str, str]], list[tuple[list[str | int], str]]]


def _require(secrets: Mapping[str, str], *names: str, because: str) -> list[tuple[list[str | int], str]]:
    return [(["secrets", name], f"required when {because}") for name in names if not secrets.get(name)]


def _http_api_auth(config: Mapping[str, Any], secrets: Mapping[str, str]) -> list[tuple[list[str | int], str]]:
    auth = config.get("auth_type")
    if auth in ("bearer", "header", "query"):
        return _require(secrets, "token", because=f"auth_type is {auth!r}")
    if auth == "basic":
        return _require(secrets, "username", "password", because="auth_type is 'basic'")
    return []


def _rest_api_auth(config: Mapping[str, Any], secrets: Mapping[str, str]) -> list[tuple[list[str | int], str]]:
    auth = config.get("auth_type")
    if auth == "bearer":
        return _require(secrets, "token", because="auth_type is 'bearer'")
    if auth == "api_key":
        return _require(secrets, "api_key", because="auth_type is 'api_key'")
    if auth == "http_basic":
        return _require(secrets, "username", "password", because="auth_type is 'http_basic'")
    return []


@dataclass(frozen=True)
class ProviderSpec:
    slug: str
    title: str
    category: Category
    description: str
    config_model: type[BaseModel]
    secrets_model: type[BaseModel]
    cross_check: CrossCheck | None = None
    # POST /connections/{ref}/test can check it (see connections/testing.py).
    testable: bool = False


PROVIDERS: dict[str, ProviderSpec] = {
    spec.slug: spec
    for spec in (
        ProviderSpec("postgres", "PostgreSQL", "database", "A PostgreSQL database.", PostgresConfig,
                     PasswordSecrets, testable=True),
        ProviderSpec("mysql", "MySQL / MariaDB", "database", "A MySQL or MariaDB database.", MySQLConfig,
                     PasswordSecrets, testable=True),
        ProviderSpec("sqlite", "SQLite", "database", "A SQLite file on the server.", FileDatabaseConfig, NoSecrets,
                     testable=True),
        ProviderSpec("duckdb", "DuckDB", "database", "A DuckDB file on the server.", FileDatabaseConfig, NoSecrets,
                     testable=True),
        ProviderSpec("http_api", "HTTP API", "http", "Any HTTP API, with bearer, header, basic or query auth.",
                     HttpApiConfig, HttpApiSecrets, _http_api_auth, testable=True),
        ProviderSpec("rest_api", "REST API (dlt)", "http", "A REST API read with dlt's REST client.",
                     RestApiConfig, RestApiSecrets, _rest_api_auth),
        ProviderSpec("openai", "OpenAI", "llm", "OpenAI models.", OpenAIConfig, ApiKeySecrets),
        ProviderSpec("anthropic", "Anthropic", "llm", "Anthropic models.", AnthropicConfig, ApiKeySecrets),
        ProviderSpec("openai_compatible", "OpenAI-compatible", "llm",
                     "Any server speaking the OpenAI API (Ollama, vLLM, …).", OpenAICompatibleConfig,
                     OptionalApiKeySecrets),
        ProviderSpec("scripted", "Scripted (offline)", "llm",
                     "Plays back a fixed conversation, offline and free: for demos and tests.", ScriptedConfig,
                     NoSecrets, testable=True),
        ProviderSpec("tavily", "Tavily", "search", "Tavily web search.", TavilyConfig, ApiKeySecrets),
    )
}  # fmt: skip


def get_provider(slug: str, *, loc: list[str | int]) -> ProviderSpec:
    spec = PROVIDERS.get(slug)
    if spec is None:
        raise ValidationFailed.at(loc, f"unknown provider {slug!r}; known: {', '.join(sorted(PROVIDERS))}")
    return spec


def _field_errors(exc: ValidationError, prefix: list[str | int]) -> list[FieldError]:
    # Without the input: a secret that failed validation must not come back in the error.
    return [
        FieldError([*prefix, *err["loc"]], err["msg"], err["type"])
        for err in exc.errors(include_input=False, include_url=False, include_context=False)
    ]


def validate_config(spec: ProviderSpec, config: Mapping[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
    try:
        # Without the unset optional fields: readers use ``config.get(name, default)``, and a stored null would
        # hide their default (e.g. ``order`` for the model chain).
        return spec.config_model.model_validate(config).model_dump(mode="json", exclude_none=True), []
    except ValidationError as exc:
        return {}, _field_errors(exc, ["body", "config"])


def validate_secrets(spec: ProviderSpec, secrets: Mapping[str, Any]) -> tuple[dict[str, str], list[FieldError]]:
    try:
        model = spec.secrets_model.model_validate(secrets)
    except ValidationError as exc:
        return {}, _field_errors(exc, ["body", "secrets"])
    return {name: str(value) for name, value in model.model_dump(exclude_none=True).items()}, []


def cross_check(spec: ProviderSpec, config: Mapping[str, Any], secret_names: Mapping[str, str]) -> list[FieldError]:
    if spec.cross_check is None:
        return []
    return [FieldError(["body", *loc], msg, "missing") for loc, msg in spec.cross_check(config, secret_names)]
