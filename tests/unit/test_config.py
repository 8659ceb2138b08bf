"""Settings: env vs flags, defaults, and one-line exit-2 errors that never echo secrets."""

import subprocess
import sys

import pytest

from exporter.cli import main
from exporter.config import ConfigError, load_settings


def test_defaults() -> None:
    s = load_settings({})
    assert s.redis_address is None and not s.redis_enabled
    assert s.listen_address == ("", 9478) and s.metrics_path == "/metrics"
    assert (s.probe_interval, s.health_check_timeout, s.health_check_attempts,
            s.health_check_backoff, s.topology_refresh) == (5.0, 2.0, 3, 0.5, 60.0)  # fmt: skip
    assert (s.redis_dial_timeout, s.redis_read_timeout, s.redis_write_timeout) == (5, 3, 3)
    assert (s.otlp_grpc_port, s.otlp_http_port, s.proc_root) == (4317, 4318, "/proc")
    assert s.target_deadline == pytest.approx(3 * 2 + 2 * 0.5)
    assert s.otlp is None


def test_flag_wins_over_env() -> None:
    s = load_settings({"REDIS_ADDRESS": "a:1", "DEPWATCH_PROBE_INTERVAL": "5s"},
                      {"redis_address": "b:2,c:3", "probe_interval": "1m30s"})  # fmt: skip
    assert s.redis_address == ("b:2", "c:3") and s.probe_interval == 90


def test_incident_settings() -> None:
    s = load_settings({
        "REDIS_ADDRESS": "clustercfg.gateway.abc.use1.cache.amazonaws.com:6379",
        "REDIS_CLUSTER_MODE": "true", "REDIS_TLS_ENABLED": "TRUE", "REDIS_POOL_SIZE": "1000",
        "REDIS_READ_ONLY": "yes", "REDIS_ROUTE_BY_LATENCY": "1", "REDIS_PASSWORD": "s3cr3t-t0k3n",
    })  # fmt: skip
    assert s.redis_cluster_mode and s.redis_tls_enabled and s.redis_pool_size == 1000
    assert s.redis_read_only and s.redis_route_by_latency
    assert "s3cr3t-t0k3n" not in repr(s)


@pytest.mark.parametrize(("env", "variable"), [
    ({"DEPWATCH_PROBE_INTERVAL": "0"}, "DEPWATCH_PROBE_INTERVAL"),
    ({"DEPWATCH_PROBE_INTERVAL": "-5s"}, "DEPWATCH_PROBE_INTERVAL"),
    ({"DEPWATCH_HEALTH_CHECK_TIMEOUT": "fast"}, "DEPWATCH_HEALTH_CHECK_TIMEOUT"),
    ({"DEPWATCH_HEALTH_CHECK_ATTEMPTS": "0"}, "DEPWATCH_HEALTH_CHECK_ATTEMPTS"),
    ({"DEPWATCH_HEALTH_CHECK_BACKOFF": "1x"}, "DEPWATCH_HEALTH_CHECK_BACKOFF"),
    ({"REDIS_CLUSTER_MODE": "maybe", "REDIS_ADDRESS": "a:1"}, "REDIS_CLUSTER_MODE"),
    ({"REDIS_ADDRESS": "nohost"}, "REDIS_ADDRESS"),
    ({"REDIS_ADDRESS": "a:99999"}, "REDIS_ADDRESS"),
    ({"REDIS_POOL_SIZE": "lots"}, "REDIS_POOL_SIZE"),
    ({"REDIS_AUTH_TOKEN_ENCODING": "base32"}, "REDIS_AUTH_TOKEN_ENCODING"),
    ({"DEPWATCH_LISTEN_ADDRESS": "9478"}, "DEPWATCH_LISTEN_ADDRESS"),
    ({"DEPWATCH_METRICS_PATH": "metrics"}, "DEPWATCH_METRICS_PATH"),
    ({"DEPWATCH_OTLP_GRPC_PORT": "0"}, "DEPWATCH_OTLP_GRPC_PORT"),
    ({"DEPWATCH_LOG_LEVEL": "trace"}, "DEPWATCH_LOG_LEVEL"),
    ({"DEPWATCH_LOG_FORMAT": "xml"}, "DEPWATCH_LOG_FORMAT"),
    ({"REDIS_PASSWORD_FILE": "/nonexistent/pw"}, "REDIS_PASSWORD_FILE"),
    ({"REDIS_TLS_CA_FILE": "/nonexistent/ca.pem", "REDIS_TLS_ENABLED": "true",
      "REDIS_ADDRESS": "a:1"}, "REDIS_TLS_CA_FILE"),
    ({"REDIS_PASSWORD_FROM_SECRETS": "true"}, "AWS_SECRET_NAME"),
    ({"REDIS_PASSWORD": "x", "REDIS_PASSWORD_FROM_SECRETS": "true", "AWS_SECRET_NAME": "s"},
     "REDIS_PASSWORD"),
    ({"REDIS_TLS_ENABLED": "true"}, "REDIS_ADDRESS"),
    ({"REDIS_TLS_SERVER_NAME": "x", "REDIS_ADDRESS": "a:1"}, "REDIS_TLS_ENABLED"),
    ({"DEPWATCH_OTLP_GRPC_PORT": "4318"}, "DEPWATCH_OTLP_HTTP_PORT"),
    ({"DEPWATCH_APP_REPLICAS": "72"}, "DEPWATCH_APP_REPLICAS"),
])  # fmt: skip
def test_invalid_setting_exit_2_one_line(env: dict, variable: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"], env=env) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("depwatch: ") and variable in err
    assert "Traceback" not in err


def test_secret_value_never_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"REDIS_PASSWORD": "hunter2", "REDIS_PASSWORD_FROM_SECRETS": "true",
                       "AWS_SECRET_NAME": "s"})  # fmt: skip
    assert "hunter2" not in str(info.value)


def test_unknown_flag_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--no-such-flag"], env={})
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("depwatch: ") and err.count("\n") == 1


def test_help_lists_every_setting_with_env_and_default() -> None:
    out = subprocess.run([sys.executable, "-m", "exporter", "--help"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    from exporter.config import OTEL_ENV_ONLY, OTEL_VARIABLES, SETTINGS

    for s in SETTINGS:
        assert s.env in out, s.env
        if s.flag:
            assert s.flag in out
    for env, flag in OTEL_VARIABLES:
        assert env in out and flag in out
    for env in OTEL_ENV_ONLY:
        assert env in out
    assert "default: 5s" in out and "default: :9478" in out


def test_version() -> None:
    out = subprocess.run([sys.executable, "-m", "exporter", "--version"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert out.startswith("depwatch ")


def test_subprocess_invalid_value_no_traceback() -> None:
    proc = subprocess.run([sys.executable, "-m", "exporter", "check"], capture_output=True,
                          text=True, env={"DEPWATCH_PROBE_INTERVAL": "soon", "PATH": "/usr/bin"},
                          check=False)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "DEPWATCH_PROBE_INTERVAL" in proc.stderr and "Traceback" not in proc.stderr
