"""Server settings: one pydantic ``BaseSettings``, the single source of truth for
``zero2one serve``'s options (the CLI generates its flags from these fields), the environment
(``ZERO2ONE_SERVE_*``) and the worker processes (which read it back from the environment)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class ServeSettings(BaseSettings):
    """Everything ``zero2one serve`` can be told; each field is also an environment variable
    (``ZERO2ONE_SERVE_MODEL``, ``ZERO2ONE_SERVE_MAX_BODY_BYTES``, ...). The API key is read from
    ``ZERO2ONE_API_KEY``."""

    model_config = SettingsConfigDict(env_prefix="ZERO2ONE_SERVE_", extra="forbid",
                                      validate_by_name=True)

    model: str = Field(description="Model reference to serve (never taken from a request).")
    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8000, ge=1, le=65535, description="Port.")
    workers: int = Field(1, ge=1, le=64, description="Worker processes.")
    trust: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Extra types to trust on load."
    )
    api_key: SecretStr | None = Field(
        None, validation_alias="ZERO2ONE_API_KEY",
        description="Require 'Authorization: Bearer KEY' (health probes and /metrics stay open; "
        "prefer the ZERO2ONE_API_KEY variable: flags show in ps).",
        json_schema_extra={"env": "ZERO2ONE_API_KEY"},
    )
    max_body_bytes: int = Field(1 << 20, ge=1024, description="Largest request body accepted.")
    max_batch: int = Field(1024, ge=1, description="Most rows (or images) in one request.")
    max_image_pixels: int = Field(
        16_777_216, ge=64, description="Largest image (width × height) accepted; bigger ones "
        "are refused from the header, before decoding."
    )
    max_image_bytes: int | None = Field(
        None, ge=1024, description="Largest image file accepted; at most --max-body-bytes, "
        "which every request body meets first (default: the same)."
    )
    allow_image_urls: bool = Field(
        False, description="Models that read images: fetch http(s) image_url parts (each at "
        "most --max-image-bytes, within 10 s, no redirects). Default: base64 data: URLs only."
    )
    precision: Literal["bfloat16", "float32", "int8"] | None = Field(
        None, description="Language models: weights of the decoding step (float32: exactly "
        "transformers' numbers; bfloat16: about 3× faster on a CPU; int8: a quarter of "
        "float32's bytes). Default: int8 for a model compressed to int8 weights, else bfloat16."
    )
    moderation: str | None = Field(
        None, description="Moderate prompts and generated text: 'default' (the built-in "
        "checks) or a moderation YAML file; adds POST /v1/moderations."
    )
    feedback: str | None = Field(
        None, description="Record every answer and take POST /v1/feedback: 'default' (SQLite "
        "in the workspace), a file path, or a database URL (postgresql://...)."
    )
    monitor: str | None = Field(
        None, description="Sample the served requests and answers for drift monitoring "
        "(zero2one monitor MODEL): 'default' (SQLite in the workspace), a file path, or a "
        "database URL (postgresql://...). Personal data in texts is replaced by labels."
    )
    monitor_rate: float = Field(
        1.0, gt=0, le=1, description="Share of the answers sampled for monitoring."
    )
    monitor_max_per_second: float = Field(
        100.0, ge=0, description="Most answers sampled a second, per worker (0: no cap): a "
        "quiet server keeps every answer, a busy one a steady sample."
    )
    monitor_max_samples: int = Field(
        100_000, ge=100, description="Samples kept per model in the monitor store (the oldest "
        "go first)."
    )
    monitor_interval: float = Field(
        30.0, ge=1, description="Seconds between two drift checks for the /metrics gauges."
    )
    monitor_window: float = Field(
        3600.0, ge=10, description="Seconds of samples each drift check for /metrics reads."
    )
    engine: str | None = Field(
        None, description="The decoding engine, one the model's task offers (language models: "
        "auto, llama.cpp, zero2one). Default: the task's first (language models: auto — "
        "llama.cpp's server engine where it runs the model faster here, else zero2one's own)."
    )
    max_batch_tokens: int | None = Field(
        None, ge=16, description="Language models: most tokens (rows × (longest prompt + "
        "max_tokens)) decoded together, which bounds the KV cache's memory; a request over it "
        "alone is refused. Default: what a quarter of the memory holds, per worker."
    )
    max_images: int = Field(
        4, ge=1, le=64, description="Generative image models: most images one request asks for."
    )
    max_steps: int = Field(
        100, ge=1, le=1000, description="Generative image models: most denoising steps a "
        "request asks for."
    )
    max_generated_pixels: int = Field(
        1 << 20, ge=64, description="Generative image models: largest width × height a request "
        "asks for."
    )
    batch_max_size: int = Field(
        256, ge=1, description="Most rows the micro-batcher hands to one predict call."
    )
    # 0: greedy batching — whatever queued while the last batch ran forms the next one, so a
    # lone request never waits and a burst still becomes one predict call
    batch_max_wait_ms: float = Field(
        0.0, ge=0, le=1000, description="Extra wait for more requests before a batch runs."
    )
    rate_limit: float | None = Field(
        None, gt=0, description="Requests per second per client (API key, else address)."
    )
    rate_burst: int = Field(50, ge=1, description="Requests a client may send at once.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Allow this CORS origin (repeatable; CORS is off by "
        "default).", json_schema_extra={"cli": "cors-origin"},
    )
    follow_seconds: float | None = Field(
        None, ge=1, description="Every N seconds re-resolve an alias reference and hot-swap "
        "on change.", json_schema_extra={"cli": "follow"},
    )
    playground: bool = Field(
        True, description="Serve the web playground at / (a page for trying the model; its "
        "requests need the API key like any other)."
    )
    access_log: bool = Field(False, description="Log every request.")
    graceful_seconds: int = Field(
        30, ge=0, description="On SIGTERM, wait this long for requests in flight."
    )

    @field_validator("cors_origins", "trust", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        """Comma-separated in the environment (``a,b``), lists from Python."""
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @model_validator(mode="after")
    def _image_within_body(self) -> ServeSettings:
        if self.max_image_bytes is not None and self.max_image_bytes > self.max_body_bytes:
            raise ValueError(
                f"max_image_bytes ({self.max_image_bytes}) is over max_body_bytes "
                f"({self.max_body_bytes}): every request body is refused above the latter, so "
                "raise --max-body-bytes too")
        return self

    @property
    def image_bytes(self) -> int:
        """The largest image file a request may carry."""
        return self.max_image_bytes or self.max_body_bytes

    def environment(self) -> dict[str, str]:
        """These settings as the environment variables they are read back from (worker
        processes are new processes: settings travel in the environment)."""
        env = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None:
                continue
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            key = str(extra.get("env") or f"ZERO2ONE_SERVE_{name.upper()}")
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[key] = ",".join(value) if isinstance(value, list) else str(value)
        return env
