"""Settings: parsed once from config.toml and CHATSERVER_* environment variables into dataclasses.

One rule maps every setting to an environment variable: `[section] key` is
`CHATSERVER_SECTION_KEY`. `PORT` also sets `[server] port`, as Procfile platforms expect.
Environment variables win over the file. An unknown key or a bad value raises ConfigError naming it.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "CHATSERVER_"
# CHATSERVER_* variables that are not settings: the config file's path, and the test suite's own.
ENV_OTHERS = frozenset({"CHATSERVER_CONFIG"})
ENV_RESERVED_PREFIX = "CHATSERVER_TEST_"


class ConfigError(ValueError):
    """A setting is unknown or its value is invalid; the message names the key."""


def cidr_problem(value: str) -> str | None:
    """Why `value` is not a CIDR network (e.g. "10.0.0.0/8"), or None."""
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return f"{value!r} is not a CIDR"
    return None


@dataclass(frozen=True)
class ServerSettings:
    host: str = "0.0.0.0"
    port: int = 8080
    log_level: str = field(
        default="INFO", metadata={"choices": ("DEBUG", "INFO", "WARNING", "ERROR")})
    log_format: str = field(default="text", metadata={"choices": ("text", "json")})
    max_body_bytes: int = 1_048_576
    max_json_depth: int = 32
    shutdown_timeout: float = 10.0
    cors_origins: tuple[str, ...] = ()
    static_dir: str = ""


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = ""
    data_dir: str = ".chatserver/pgdata"
    pool_min_size: int = 2
    pool_max_size: int = 20
    command_timeout: float = 30.0
    plan_cache_mode: str = field(default="force_custom_plan", metadata={
        "choices": ("force_custom_plan", "auto", "force_generic_plan")})
    synchronous_commit: str = field(default="on", metadata={
        "choices": ("on", "remote_apply", "remote_write", "local", "off")})
    partitions: int = 0


@dataclass(frozen=True)
class RedisSettings:
    url: str = ""
    cluster: bool = False
    cluster_refresh_interval: float = 5.0


@dataclass(frozen=True)
class MessageSettings:
    max_content_bytes: int = 65_536
    page_default: int = 50
    page_max: int = 500
    token_metadata_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class LimitSettings:
    requests_per_second_per_key: float = 100.0
    request_burst_per_key: int = 200
    socket_frames_per_second: float = 20.0
    socket_frame_burst: int = 40
    socket_dropped_frames_per_second: int = 100
    socket_frames_in_flight: int = 32
    max_sockets_per_instance: int = 10_000
    max_sockets_per_conversation: int = 1_000
    max_sockets_per_team: int = 5_000
    failed_auths_per_second_per_address: float = 10.0
    failed_auth_burst_per_address: int = 100


@dataclass(frozen=True)
class WebhookSettings:
    run_in_server: bool = True
    schedule: tuple[float, ...] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    jitter: float = 0.2
    backoff_floor: float = 60.0
    retry_after_max: float = 86400.0
    timeout: float = 15.0
    allowed_networks: tuple[str, ...] = field(default=(), metadata={"each": cidr_problem})
    ordering: str = field(default="strict", metadata={"choices": ("strict", "best_effort")})
    disable_after: float = 432000.0
    secret_grace_period: float = 86400.0
    concurrency: int = 20
    claim_gather: float = 0.005
    poll_interval: float = 1.0
    response_body_max: int = 20480
    max_endpoints_per_team: int = 100
    endpoint_description_max: int = 500


@dataclass(frozen=True)
class RealtimeSettings:
    send_queue_size: int = 1000
    send_queue_bytes: int = 1_048_576
    heartbeat: float = 30.0
    max_frame_bytes: int = 1_048_576
    compress: bool = False
    close_timeout: float = 5.0
    gap_wait: float = 0.5
    reconcile_interval: float = 5.0
    bus_backoff_max: float = 5.0
    listener_stall_timeout: float = 15.0
    presence_ttl: float = 30.0
    token_secret: str = ""
    token_ttl_default: int = 3600
    token_ttl_max: int = 86400
    allowed_origins: tuple[str, ...] = ()
    read_frame_interval: float = 1.0


@dataclass(frozen=True)
class OutageSettings:
    retry_after: int = 5


@dataclass(frozen=True)
class PerformanceSettings:
    group_commit_max_batch: int = 256
    group_commit_in_flight: int = 2
    api_key_cache_ttl: float = 5.0
    unknown_key_cache_ttl: float = 5.0
    unknown_key_cache_size: int = 10_000
    fanout_flush_interval: float = 0.002
    uvloop: bool = True
    memory_trim_interval: float = 10.0


@dataclass(frozen=True)
class StreamSettings:
    commit_interval: float = 0.05
    idle_timeout: float = 120.0
    max_open_per_conversation: int = 4
    max_text_bytes: int = 65_536
    deltas_per_second: float = 200.0


@dataclass(frozen=True)
class SecuritySettings:
    # Encrypts webhook secrets and the token signing key at rest (see chatserver.security.box).
    secret_key: str = ""
    # Older keys, still accepted for decryption while rows are re-encrypted with secret_key.
    previous_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class MetricsSettings:
    # When set, GET /metrics requires `Authorization: Bearer <token>`.
    token: str = ""


@dataclass(frozen=True)
class RunSettings:
    # A run whose status has not changed for this many seconds is failed (error.code "stale").
    stale_after: float = 600.0
    # Seconds between two looks for stale runs (each instance looks; each run is failed once).
    stale_check_interval: float = 30.0
    # Seconds an instance remembers a conversation's config.on_input_during_run.
    policy_cache_ttl: float = 1.0
    # Most options an action (confirm, choice) may offer, and the longest prompt in characters.
    action_max_options: int = 20
    action_prompt_max_chars: int = 2000


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    messages: MessageSettings = field(default_factory=MessageSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    realtime: RealtimeSettings = field(default_factory=RealtimeSettings)
    outages: OutageSettings = field(default_factory=OutageSettings)
    performance: PerformanceSettings = field(default_factory=PerformanceSettings)
    streams: StreamSettings = field(default_factory=StreamSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    runs: RunSettings = field(default_factory=RunSettings)

    @classmethod
    def load(
        cls, path: str | Path | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Read `path` (if given and present), then overlay the environment."""
        environ = os.environ if environ is None else environ
        raw: dict[str, Any] = {}
        if path is not None:
            try:
                with open(path, "rb") as f:
                    raw = tomllib.load(f)
            except FileNotFoundError:
                raise ConfigError(f"config file not found: {path}") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: {exc}") from None
        return cls.from_mapping(raw, environ)

    @classmethod
    def from_mapping(
        cls, raw: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> Settings:
        environ = {} if environ is None else environ
        sections = {f.name: f for f in dataclasses.fields(cls)}
        for name in raw:
            if name not in sections:
                raise ConfigError(f"unknown config section [{name}]")
        _check_env_names(cls, environ)
        built = {}
        for name, fld in sections.items():
            section_raw = raw.get(name, {})
            if not isinstance(section_raw, Mapping):
                raise ConfigError(f"[{name}] must be a table")
            built[name] = _build_section(name, _section_type(cls, fld), section_raw, environ)
        return cls(**built)

    def replace(self, **sections: dict[str, Any]) -> Settings:
        """A copy with some keys of some sections changed: replace(server={"port": 0})."""
        changed = {
            name: dataclasses.replace(getattr(self, name), **values)
            for name, values in sections.items()
        }
        return dataclasses.replace(self, **changed)


def env_names(cls: type[Settings]) -> list[str]:
    """Every CHATSERVER_* variable a setting reads."""
    return sorted(
        f"{ENV_PREFIX}{section.name}_{key.name}".upper()
        for section in dataclasses.fields(cls)
        for key in dataclasses.fields(_section_type(cls, section))
    )


def _check_env_names(cls: type[Settings], environ: Mapping[str, str]) -> None:
    """A misspelt CHATSERVER_* variable stops start-up naming the nearest known one (silently
    ignoring it would run with a setting the operator believes is changed)."""
    known = env_names(cls)
    for name in sorted(environ):
        if (not name.startswith(ENV_PREFIX) or name in known or name in ENV_OTHERS
                or name.startswith(ENV_RESERVED_PREFIX)):
            continue
        nearest = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {nearest[0]}?" if nearest else " (see config.toml)"
        raise ConfigError(f"unknown environment variable {name}{hint}")


def _section_type(owner: type, fld: dataclasses.Field[Any]) -> type:
    hints = typing.get_type_hints(owner)
    return typing.cast(type, hints[fld.name])


def _build_section(
    name: str, section_cls: type, raw: Mapping[str, Any], environ: Mapping[str, str]
) -> Any:
    hints = typing.get_type_hints(section_cls)
    known = {f.name for f in dataclasses.fields(section_cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"unknown config key [{name}] {key}")
    values: dict[str, Any] = {}
    for key in known:
        env_name = f"{ENV_PREFIX}{name}_{key}".upper()
        label = f"[{name}] {key}"
        if env_name in environ:
            values[key] = _parse_env(f"{label} (env {env_name})", hints[key], environ[env_name])
        elif key in raw:
            values[key] = _check_type(label, hints[key], raw[key])
    if name == "server" and "PORT" in environ and f"{ENV_PREFIX}SERVER_PORT" not in environ:
        values["port"] = _parse_env("[server] port (env PORT)", int, environ["PORT"])
    for fld in dataclasses.fields(section_cls):
        _check_value(f"[{name}] {fld.name}", fld, values.get(fld.name))
    return section_cls(**values)


def _check_value(label: str, fld: dataclasses.Field[Any], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise ConfigError(f"{label}: must not be negative, got {value!r}")
    choices = fld.metadata.get("choices")
    if choices and value not in choices:
        raise ConfigError(f"{label}: must be one of {', '.join(choices)}, got {value!r}")
    check_each = fld.metadata.get("each")  # of every item of a list: its problem, or None
    if check_each is not None:
        for item in value:
            if (problem := check_each(item)) is not None:
                raise ConfigError(f"{label}: {problem}")


def _parse_env(label: str, typ: Any, text: str) -> Any:
    if typ is str:
        return text
    if typ is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{label}: expected true or false, got {text!r}")
    if typ in (int, float):
        try:
            return typ(text.strip())
        except ValueError:
            raise ConfigError(f"{label}: expected a number, got {text!r}") from None
    if _is_list(typ):
        item = typing.get_args(typ)[0]
        parts = [p.strip() for p in text.split(",") if p.strip()]
        return tuple(_parse_env(label, item, p) for p in parts)
    raise ConfigError(f"{label}: unsupported type {typ}")


def _check_type(label: str, typ: Any, value: Any) -> Any:
    if _is_list(typ):
        if not isinstance(value, list):
            raise ConfigError(f"{label}: expected a list, got {value!r}")
        item = typing.get_args(typ)[0]
        return tuple(_check_type(label, item, v) for v in value)
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is int and isinstance(value, bool):
        raise ConfigError(f"{label}: expected an integer, got {value!r}")
    if not isinstance(value, typ):
        raise ConfigError(f"{label}: expected {typ.__name__}, got {value!r}")
    return value


def _is_list(typ: Any) -> bool:
    return typing.get_origin(typ) is tuple or (
        isinstance(typ, types.GenericAlias) and typ.__origin__ is tuple
    )
