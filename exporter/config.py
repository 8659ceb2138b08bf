"""Settings: one frozen, typed object built from env vars and flags, validated once.

Every setting is an environment variable with a command-line flag that wins over
it, except REDIS_PASSWORD, which has no flag so that it never shows in the process
list. Errors are :class:`ConfigError`: one line naming the variable, the value (never
a secret's) and what is accepted.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.otlp_config import OtlpConfigError, OtlpSettings, parse_otlp_env
from exporter.values import (
    BOOL_ACCEPTED,
    parse_bool,
    parse_duration,
    parse_host_port,
    parse_positive_int,
)

__all__ = ["SETTINGS", "ConfigError", "Setting", "Settings", "add_setting_flags", "load_settings"]


class ConfigError(Exception):
    """An invalid setting; ``str()`` is the one line printed after ``depwatch: ``."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One entry of the settings table (drives flags, --help and validation)."""

    field: str
    env: str
    default: str | None
    help: str
    parse: Callable[[str], Any] = str
    flag: str | None = None
    #: the value is a secret: never echoed in errors
    secret: bool = False
    #: shown in --help instead of the raw default
    default_text: str | None = None


def _enum(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError("one of " + ", ".join(choices))
        return value

    return parse


def _seeds(text: str) -> tuple[str, ...]:
    seeds = tuple(part.strip() for part in text.split(",") if part.strip())
    if not seeds:
        raise ValueError("host:port, or a comma-separated list of host:port seed nodes")
    for seed in seeds:
        host, _port = parse_host_port(seed)
        if not host:
            raise ValueError("host:port, or a comma-separated list of host:port seed nodes")
    return seeds


def _listen(text: str) -> tuple[str, int]:
    return parse_host_port(text)


def _path(text: str) -> str:
    if not text.startswith("/") or text in {"/", "/healthz", "/readyz", "/status"}:
        raise ValueError("a path starting with / other than /, /healthz, /readyz, /status")
    return text


def _port(text: str) -> int:
    return parse_positive_int(text, maximum=65535)


def _attempts(text: str) -> int:
    return parse_positive_int(text, maximum=100)


def _nonempty(text: str) -> str:
    if not text.strip():
        raise ValueError("a non-empty value")
    return text.strip()


_B = parse_bool
_D = parse_duration

#: The table of settings. OTEL_* variables are read separately (see otlp_config).
SETTINGS: tuple[Setting, ...] = (
    Setting("redis_address", "REDIS_ADDRESS", None,
            "Redis host:port, or comma-separated seed nodes; unset turns Redis probing off",
            _seeds, "--redis.address"),
    Setting("redis_cluster_mode", "REDIS_CLUSTER_MODE", "false",
            "discover the cluster from the seeds and probe every node", _B, "--redis.cluster-mode"),
    Setting("redis_tls_enabled", "REDIS_TLS_ENABLED", "false", "TLS to every node", _B,
            "--redis.tls"),
    Setting("redis_tls_ca_file", "REDIS_TLS_CA_FILE", None,
            "CA bundle for verifying nodes", _nonempty, "--redis.tls-ca-file",
            default_text="system CAs"),
    Setting("redis_tls_server_name", "REDIS_TLS_SERVER_NAME", None,
            "name to verify instead of the dialled host", _nonempty, "--redis.tls-server-name"),
    Setting("redis_tls_insecure_skip_verify", "REDIS_TLS_INSECURE_SKIP_VERIFY", "false",
            "skip certificate verification (logged as a warning)", _B,
            "--redis.tls-insecure-skip-verify"),
    Setting("redis_username", "REDIS_USERNAME", None, "ACL user", _nonempty, "--redis.username"),
    Setting("redis_password", "REDIS_PASSWORD", None,
            "AUTH password / token (env only: no flag, so it never shows in the process list)",
            str, None, secret=True),
    Setting("redis_password_file", "REDIS_PASSWORD_FILE", None,
            "read the password from a file; re-read when it changes", _nonempty,
            "--redis.password-file"),
    Setting("redis_password_from_secrets", "REDIS_PASSWORD_FROM_SECRETS", "false",
            "fetch the password from AWS Secrets Manager secret AWS_SECRET_NAME", _B,
            "--redis.password-from-secrets"),
    Setting("aws_secret_name", "AWS_SECRET_NAME", None,
            "Secrets Manager secret holding the password (JSON 'password' key, or raw)",
            _nonempty, "--aws.secret-name"),
    Setting("redis_auth_token_encoding", "REDIS_AUTH_TOKEN_ENCODING", "raw",
            "raw, or base64-alnum (base64 of the secret without =, +, /: ElastiCache's token)",
            _enum("raw", "base64-alnum"), "--redis.auth-token-encoding"),
    Setting("redis_pool_size", "REDIS_POOL_SIZE", None,
            "the application's pool size (go-redis cluster clients apply it per node)",
            parse_positive_int, "--redis.pool-size",
            default_text="go-redis default: 10 x CPUs standalone, 5 x CPUs per node cluster"),
    Setting("redis_dial_timeout", "REDIS_DIAL_TIMEOUT", "5s", "connect timeout", _D,
            "--redis.dial-timeout"),
    Setting("redis_read_timeout", "REDIS_READ_TIMEOUT", "3s", "socket read timeout", _D,
            "--redis.read-timeout"),
    Setting("redis_write_timeout", "REDIS_WRITE_TIMEOUT", "3s", "socket write timeout", _D,
            "--redis.write-timeout"),
    Setting("redis_read_only", "REDIS_READ_ONLY", "false",
            "the application also reads from replicas (pool on every node)", _B,
            "--redis.read-only"),
    Setting("redis_route_by_latency", "REDIS_ROUTE_BY_LATENCY", "false",
            "the application routes reads by latency (pool on every node)", _B,
            "--redis.route-by-latency"),
    Setting("listen_address", "DEPWATCH_LISTEN_ADDRESS", ":9478", "HTTP listen address",
            _listen, "--web.listen-address"),
    Setting("metrics_path", "DEPWATCH_METRICS_PATH", "/metrics", "path serving metrics", _path,
            "--web.telemetry-path"),
    Setting("web_config_file", "DEPWATCH_WEB_CONFIG_FILE", None,
            "exporter-toolkit web config (TLS, basic auth) for the HTTP server", _nonempty,
            "--web.config.file"),
    Setting("probe_interval", "DEPWATCH_PROBE_INTERVAL", "5s", "time between probe cycles", _D,
            "--probe.interval"),
    Setting("health_check_timeout", "DEPWATCH_HEALTH_CHECK_TIMEOUT", "2s",
            "timeout of each health-check attempt", _D, "--health-check.timeout"),
    Setting("health_check_attempts", "DEPWATCH_HEALTH_CHECK_ATTEMPTS", "3",
            "attempts per health check", _attempts, "--health-check.attempts"),
    Setting("health_check_backoff", "DEPWATCH_HEALTH_CHECK_BACKOFF", "500ms",
            "pause between attempts", _D, "--health-check.backoff"),
    Setting("topology_refresh", "DEPWATCH_TOPOLOGY_REFRESH_INTERVAL", "60s",
            "cluster topology refresh interval (also at once on MOVED or a failed node)", _D,
            "--redis.topology-refresh"),
    Setting("otlp_grpc_port", "DEPWATCH_OTLP_GRPC_PORT", "4317", "collector's OTLP/gRPC port",
            _port, "--otlp.grpc-port"),
    Setting("otlp_http_port", "DEPWATCH_OTLP_HTTP_PORT", "4318", "collector's OTLP/HTTP port",
            _port, "--otlp.http-port"),
    Setting("proc_root", "DEPWATCH_PROC_ROOT", "/proc", "where the pod's socket tables are read",
            _nonempty, "--proc-root"),
    Setting("app_replicas", "DEPWATCH_APP_REPLICAS", None,
            "the application's replica count, for the connection budget in 'check'",
            parse_positive_int, "--replicas"),
    Setting("log_level", "DEPWATCH_LOG_LEVEL", "info", "debug, info, warning or error",
            _enum("debug", "info", "warning", "error"), "--log.level"),
    Setting("log_format", "DEPWATCH_LOG_FORMAT", "json", "json or console",
            _enum("json", "console"), "--log.format"),
)  # fmt: skip

#: OTEL_* variables (read with the OTLP exporter spec's rules) and their flags.
OTEL_VARIABLES: tuple[tuple[str, str], ...] = tuple(
    (env, "--otel." + env.removeprefix("OTEL_EXPORTER_OTLP_").lower().replace("_", "-"))
    for env in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        "OTEL_EXPORTER_OTLP_INSECURE",
        "OTEL_EXPORTER_OTLP_METRICS_INSECURE",
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
    )
)
#: Header variables may carry credentials: env only, like REDIS_PASSWORD.
OTEL_ENV_ONLY = ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_HEADERS")

AWS_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")


@dataclass(frozen=True, slots=True)
class Settings:
    """Validated settings. Durations are in seconds."""

    redis_address: tuple[str, ...] | None = None
    redis_cluster_mode: bool = False
    redis_tls_enabled: bool = False
    redis_tls_ca_file: str | None = None
    redis_tls_server_name: str | None = None
    redis_tls_insecure_skip_verify: bool = False
    redis_username: str | None = None
    redis_password: str | None = field(default=None, repr=False)
    redis_password_file: str | None = None
    redis_password_from_secrets: bool = False
    aws_secret_name: str | None = None
    aws_region: str | None = None
    aws_endpoint_url: str | None = None
    redis_auth_token_encoding: str = "raw"
    redis_pool_size: int | None = None
    redis_dial_timeout: float = 5.0
    redis_read_timeout: float = 3.0
    redis_write_timeout: float = 3.0
    redis_read_only: bool = False
    redis_route_by_latency: bool = False
    listen_address: tuple[str, int] = ("", 9478)
    metrics_path: str = "/metrics"
    web_config_file: str | None = None
    probe_interval: float = 5.0
    health_check_timeout: float = 2.0
    health_check_attempts: int = 3
    health_check_backoff: float = 0.5
    topology_refresh: float = 60.0
    otlp_grpc_port: int = 4317
    otlp_http_port: int = 4318
    proc_root: str = "/proc"
    app_replicas: int | None = None
    log_level: str = "info"
    log_format: str = "json"
    otlp: OtlpSettings | None = None

    @property
    def target_deadline(self) -> float:
        """Hard deadline of one target's check: attempts x timeout + backoffs."""
        return (
            self.health_check_attempts * self.health_check_timeout
            + (self.health_check_attempts - 1) * self.health_check_backoff
        )

    @property
    def proc_path(self) -> Path:
        return Path(self.proc_root)

    @property
    def redis_enabled(self) -> bool:
        return bool(self.redis_address)


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting; --help shows its env var and default."""
    group = parser.add_argument_group("settings (flag wins over env var)")
    for s in SETTINGS:
        if s.flag is None:
            continue
        default = s.default_text or (s.default if s.default is not None else "unset")
        group.add_argument(
            s.flag, dest=s.field, default=None, metavar="VALUE",
            help=f"{s.help} [env {s.env}, default: {default}]",
        )  # fmt: skip
    otel = parser.add_argument_group("OpenTelemetry exporter settings (OTLP exporter spec)")
    for env, flag in OTEL_VARIABLES:
        otel.add_argument(flag, dest=env, default=None, metavar="VALUE",
                          help=f"[env {env}, default: per OTLP spec]")  # fmt: skip
    parser.epilog = (
        "Env-only settings (no flag, so secrets never show in the process list): "
        "REDIS_PASSWORD [unset], OTEL_EXPORTER_OTLP_HEADERS / OTEL_EXPORTER_OTLP_METRICS_HEADERS "
        "[unset]. AWS_REGION / AWS_DEFAULT_REGION and AWS_ENDPOINT_URL are honoured with "
        "REDIS_PASSWORD_FROM_SECRETS. Booleans: " + BOOL_ACCEPTED + "."
    )


def _describe(setting: Setting, raw: str, accepted: str) -> str:
    shown = "(hidden)" if setting.secret else repr(raw)
    return f"invalid {setting.env} {shown}: expected {accepted}"


def load_settings(env: Mapping[str, str], flags: Mapping[str, Any] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` and parsed ``flags`` (flag wins)."""
    flags = flags or {}
    values: dict[str, Any] = {}
    for s in SETTINGS:
        raw = flags.get(s.field)
        if raw is None:
            raw = env.get(s.env)
        if raw is None or raw == "":  # empty means unset, as in the application's env
            raw = s.default
        if raw is None:
            continue
        try:
            values[s.field] = s.parse(raw)
        except ValueError as exc:
            raise ConfigError(_describe(s, raw, str(exc))) from None
    values["aws_region"] = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    values["aws_endpoint_url"] = env.get("AWS_ENDPOINT_URL") or None

    otel_env = {k: v for k, v in env.items() if k.startswith("OTEL_EXPORTER_OTLP_")}
    otel_env.update({env_name: flags[env_name] for env_name, _ in OTEL_VARIABLES
                     if flags.get(env_name) is not None})  # fmt: skip
    try:
        values["otlp"] = parse_otlp_env(otel_env)
    except OtlpConfigError as exc:
        raise ConfigError(str(exc)) from None

    settings = Settings(**values)
    _check_consistency(settings)
    return settings


def _check_consistency(s: Settings) -> None:
    """Cross-field rules: nothing a user configured may be silently ignored."""
    sources = [
        name for name, on in (
            ("REDIS_PASSWORD", s.redis_password is not None),
            ("REDIS_PASSWORD_FILE", s.redis_password_file is not None),
            ("REDIS_PASSWORD_FROM_SECRETS", s.redis_password_from_secrets),
        ) if on
    ]  # fmt: skip
    if len(sources) > 1:
        raise ConfigError(
            f"conflicting password sources {' and '.join(sources)}: set only one of them"
        )
    if s.redis_password_from_secrets and not s.aws_secret_name:
        raise ConfigError("REDIS_PASSWORD_FROM_SECRETS is true but AWS_SECRET_NAME is unset: "
                          "expected the Secrets Manager secret name")  # fmt: skip
    if s.redis_password_file is not None and not Path(s.redis_password_file).is_file():
        raise ConfigError(f"invalid REDIS_PASSWORD_FILE {s.redis_password_file!r}: "
                          "expected a readable file")  # fmt: skip
    if s.redis_tls_ca_file is not None and not Path(s.redis_tls_ca_file).is_file():
        raise ConfigError(f"invalid REDIS_TLS_CA_FILE {s.redis_tls_ca_file!r}: "
                          "expected a readable PEM file")  # fmt: skip
    if s.web_config_file is not None and not Path(s.web_config_file).is_file():
        raise ConfigError(f"invalid DEPWATCH_WEB_CONFIG_FILE {s.web_config_file!r}: "
                          "expected a readable YAML file")  # fmt: skip
    if s.redis_address is None:
        tls_only = [
            name for name, on in (
                ("REDIS_TLS_ENABLED", s.redis_tls_enabled),
                ("REDIS_CLUSTER_MODE", s.redis_cluster_mode),
            ) if on
        ]  # fmt: skip
        if tls_only:
            raise ConfigError(f"{tls_only[0]} is set but REDIS_ADDRESS is unset: "
                              "expected REDIS_ADDRESS (host:port) as well")  # fmt: skip
    if s.app_replicas is not None and s.redis_address is None:
        raise ConfigError("DEPWATCH_APP_REPLICAS (--replicas) is set but REDIS_ADDRESS is unset: "
                          "expected REDIS_ADDRESS for the connection budget")  # fmt: skip
    if (s.redis_tls_ca_file or s.redis_tls_server_name or s.redis_tls_insecure_skip_verify) and (
        not s.redis_tls_enabled
    ):
        raise ConfigError("REDIS_TLS_* options are set but REDIS_TLS_ENABLED is false: "
                          "expected REDIS_TLS_ENABLED=true")  # fmt: skip
    if s.otlp_grpc_port == s.otlp_http_port:
        raise ConfigError(f"invalid DEPWATCH_OTLP_HTTP_PORT '{s.otlp_http_port}': "
                          "expected a port different from DEPWATCH_OTLP_GRPC_PORT")  # fmt: skip


Settings.__doc__ = (Settings.__doc__ or "") + "\n\nFields mirror :data:`SETTINGS`."
