"""Fuzzing every setting with hypothesis: ``depwatch check`` only ever exits 0, 1 or 2.

Every entry of ``exporter.config.SETTINGS``, every ``OTEL_VARIABLES`` entry (plus the
env-only header and client-certificate variables) and the AWS variables get random
values: absent, arbitrary text, or picks from a list of valid and edge-case values;
each setting comes from its env var or, at random, from its flag. Then
``exporter.cli.main(["check", ...], env=...)`` runs in-process. It must return 0
(nothing wrong), 1 (a probe failed) or 2 (invalid configuration: exactly one stderr
line ``depwatch: ...`` naming a variable), never raise or print a traceback, never
show the password.

So that ``check`` returns fast whatever it probes, every target is 127.0.0.1 on a
port bound without listening (refused at once), and the backoff (the only setting
that sleeps when a target refuses) is always small or invalid, never unset (its 500 ms
default x up to 100 attempts would dominate). Large timeouts and intervals stay in:
against refused ports they cost nothing. AWS Secrets Manager goes to a refused
endpoint with instance metadata disabled and no credentials.

A handful of subprocess runs (``python -m exporter check``) check the same from
outside: no traceback, each under 2 s. The number of examples is
``DEPWATCH_FUZZ_EXAMPLES`` (default 500; the run prints how many ran).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.cli import main
from exporter.config import AWS_VARIABLES, OTEL_ENV_ONLY, OTEL_VARIABLES, SETTINGS

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("DEPWATCH_FUZZ_EXAMPLES", "500"))
PASSWORD_MARK = "Zq9pw-"
EXTRA_OTEL = ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_KEY",
              "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
              "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY")  # fmt: skip
VARIABLE = re.compile(r"\b(REDIS|DEPWATCH|OTEL|AWS)_[A-Z_]+")


@contextlib.contextmanager
def refused_ports(count: int) -> Iterator[list[int]]:
    """Ports bound on 127.0.0.1 without listening: connecting is refused at once."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        yield [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _files(tmp: Path) -> dict[str, str]:
    (tmp / "proc-garbage" / "net").mkdir(parents=True)
    (tmp / "proc-garbage" / "net" / "tcp").write_bytes(b"sl local rem\n 0: zz:zz 99\n\xff\xfe")
    (tmp / "proc-garbage" / "net" / "snmp").write_text("Tcp: a b\nTcp: 1\n")
    (tmp / "proc-empty").mkdir()
    (tmp / "password").write_text(PASSWORD_MARK + "file\n")
    (tmp / "not-pem.crt").write_text("-----BEGIN CERTIFICATE-----\nnope\n")
    (tmp / "web.yml").write_text("basic_auth_users: {alice: notahash}\nunknown: 1\n")
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    return {name: str(tmp / name) for name in
            ("proc-garbage", "proc-empty", "password", "not-pem.crt", "web.yml", "ca.pem")}


def _text() -> st.SearchStrategy[str]:
    # environment values cannot hold NUL or lone surrogates
    chars = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
    return st.text(chars, max_size=30)


BOOLS = ["true", "false", "1", "0", "yes", "no", "TRUE", "No", " yes ", "maybe", "2", "on"]
DURATIONS = ["1ms", "2s", "1m30s", "0.5", ".5", "1ns", "500us", "1h", "99999999999999999999h",
             "0", "-1s", "1e3", "inf", "nan", "1s1s", "2S", "\u0661", "10 s", "0x10"]  # fmt: skip
SMALL_BACKOFFS = ["1ms", "2ms", "0.001", "500us", "1ns", "0", "-1ms", "x", "inf", " "]
INTS = ["1", "2", "3", "100", "101", "0", "-1", "1.5", "1e2", "65535", "65536", "x", " 7 "]


def _setting_values(env: str, files: dict[str, str], ports: list[int]) -> list[str]:
    closed = ports[0]
    by_env: dict[str, list[str]] = {
        "REDIS_ADDRESS": [f"127.0.0.1:{closed}", f"localhost:{closed}", f"[::1]:{closed}",
                          f"127.0.0.1:{closed},127.0.0.1:{ports[1]}", "127.0.0.1:0",
                          "127.0.0.1:65536", f":{closed}", "127.0.0.1", "a:b:c", " , ",
                          f"[::1]{closed}", f"127.0.0.1:{closed},"],
        "REDIS_TLS_CA_FILE": [files["ca.pem"], files["not-pem.crt"], "/nonexistent", "/"],
        "REDIS_TLS_SERVER_NAME": ["redis.test", " ", "a" * 300, "127.0.0.1"],
        "REDIS_USERNAME": ["default", "depwatch", " "],
        "REDIS_PASSWORD": [PASSWORD_MARK + "static", PASSWORD_MARK + "x\n\ty", ""],
        "REDIS_PASSWORD_FILE": [files["password"], "/nonexistent", files["proc-empty"]],
        "AWS_SECRET_NAME": ["depwatch/redis", " "],
        "REDIS_AUTH_TOKEN_ENCODING": ["raw", "base64-alnum", "BASE64-ALNUM", "base64"],
        "DEPWATCH_LISTEN_ADDRESS": [":9478", "127.0.0.1:0", "[::1]:9", "nohost", ":0", ":99999"],
        "DEPWATCH_METRICS_PATH": ["/metrics", "/", "/healthz", "metrics", "/a b", "/\u00e9"],
        "DEPWATCH_WEB_CONFIG_FILE": [files["web.yml"], "/nonexistent"],
        "DEPWATCH_OTLP_GRPC_PORT": [str(ports[2]), str(ports[3]), "0", "65536", "x"],
        "DEPWATCH_OTLP_HTTP_PORT": [str(ports[3]), str(ports[2]), "0", "-1", "x"],
        "DEPWATCH_PROC_ROOT": ["/proc", "/nonexistent", files["proc-garbage"],
                               files["proc-empty"]],
        "DEPWATCH_LOG_LEVEL": ["debug", "info", "warning", "error", "ERROR", "trace"],
        "DEPWATCH_LOG_FORMAT": ["json", "console", "logfmt"],
        "OTEL_EXPORTER_OTLP_ENDPOINT": [f"http://127.0.0.1:{ports[2]}",
                                        f"https://localhost:{ports[3]}/",
                                        f"127.0.0.1:{ports[2]}", f"http://[::1]:{ports[2]}",
                                        f"http://user:{PASSWORD_MARK}@127.0.0.1:{ports[2]}",
                                        "ftp://127.0.0.1:1", "http://", "http://[::1]x:1",
                                        f"http://[::1]:{ports[2]}/v1/metrics?x=1#f",
                                        "http://[::1", "https://[fe80::1:4318/v1/metrics"],
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": [f"http://127.0.0.1:{ports[3]}/v1/metrics",
                                                f"http://127.0.0.1:{ports[2]}", "/v1/metrics"],
        "OTEL_EXPORTER_OTLP_HEADERS": [f"authorization=Bearer {PASSWORD_MARK}h", "a=b,c",
                                       "=x", "a=%ZZ", "x-a=\u00e9", "a=b\r\nc: d"],
        "OTEL_EXPORTER_OTLP_CERTIFICATE": [files["ca.pem"], files["not-pem.crt"], "/none"],
        "OTEL_EXPORTER_OTLP_TIMEOUT": ["1", "10000", "0", "-5", "1.5", "x", "99999999999"],
        "AWS_ENDPOINT_URL": [f"http://127.0.0.1:{ports[4]}", "not a url"],
        "AWS_REGION": ["us-east-1", "", "bad region!"],
    }
    by_env["OTEL_EXPORTER_OTLP_METRICS_HEADERS"] = by_env["OTEL_EXPORTER_OTLP_HEADERS"]
    by_env["OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE"] = by_env["OTEL_EXPORTER_OTLP_CERTIFICATE"]
    by_env["OTEL_EXPORTER_OTLP_METRICS_TIMEOUT"] = by_env["OTEL_EXPORTER_OTLP_TIMEOUT"]
    by_env["AWS_DEFAULT_REGION"] = by_env["AWS_REGION"]
    for name in EXTRA_OTEL:
        by_env[name] = [files["ca.pem"], files["not-pem.crt"], "/nonexistent"]
    if env in by_env:
        return by_env[env]
    if env.endswith(("_PROTOCOL",)):
        return ["grpc", "http/protobuf", "http/json", "HTTP/PROTOBUF", "http", "udp"]
    if env.endswith("_INSECURE"):
        return BOOLS
    parse_kind = {s.env: s.parse.__name__ for s in SETTINGS}.get(env, "")
    if parse_kind == "parse_bool":
        return BOOLS
    if parse_kind == "parse_duration":
        return DURATIONS
    return INTS


def _value(env: str, files: dict[str, str], ports: list[int]) -> st.SearchStrategy[str | None]:
    if env == "DEPWATCH_HEALTH_CHECK_BACKOFF":  # never unset, never slow: see module doc
        return st.sampled_from(SMALL_BACKOFFS)
    if env in {"DEPWATCH_OTLP_GRPC_PORT", "DEPWATCH_OTLP_HTTP_PORT"} or "ENDPOINT" in env:
        # only ports that refuse: an arbitrary port may reach a real, slow service
        return st.sampled_from(_setting_values(env, files, ports))
    valid = st.sampled_from(_setting_values(env, files, ports))
    return valid | valid | _text()


def _configurations(files: dict[str, str], ports: list[int]) -> st.SearchStrategy[Any]:
    """A few variables set at a time (so that many configurations are valid and probe),
    the backoff always; the targets (Redis, collector) half of the time each."""
    flags = {s.env: s.flag for s in SETTINGS if s.flag} | dict(OTEL_VARIABLES)
    names = [s.env for s in SETTINGS] + [env for env, _ in OTEL_VARIABLES]
    names += [*OTEL_ENV_ONLY, *EXTRA_OTEL, *AWS_VARIABLES]
    targets = ["REDIS_ADDRESS", "OTEL_EXPORTER_OTLP_ENDPOINT"]

    @st.composite
    def configuration(draw: st.DrawFn) -> tuple[dict[str, str], list[str]]:
        chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=8))
        chosen += [t for t in targets if t not in chosen and draw(st.booleans())]
        chosen.append("DEPWATCH_HEALTH_CHECK_BACKOFF")
        picked = {}
        for name in dict.fromkeys(chosen):
            as_flag = name in flags and draw(st.booleans())
            picked[name] = (draw(_value(name, files, ports)), as_flag)
        return _split(picked, flags)

    return configuration()


def _split(chosen: dict[str, tuple[str | None, bool]],
           flags: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    env: dict[str, str] = {}
    argv = ["check"]
    for name, (val, as_flag) in chosen.items():
        if val is None:
            continue
        if as_flag:
            argv.append(f"{flags[name]}={val}")
        else:
            env[name] = val
    if "AWS_ENDPOINT_URL" not in env:
        env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"  # never the real AWS
    return env, argv


def _check_outcome(code: object, out: str, err: str) -> None:
    assert code in (0, 1, 2), (code, err[-2000:])
    assert "Traceback" not in out + err, err[-4000:]
    if code == 2:
        lines = [line for line in err.splitlines() if not line.startswith("{")]
        assert len(lines) == 1 and lines[0].startswith("depwatch: "), err[-2000:]
        assert VARIABLE.search(lines[0]) or "--" in lines[0], lines[0]
    # the password (env or file), header tokens and endpoint user-info carry the mark
    assert PASSWORD_MARK not in out + err, (out + err)[-2000:]


@pytest.fixture
def clean_process_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No real AWS: no credentials, no instance metadata; restore global state after."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "REDIS_", "DEPWATCH_", "OTEL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    sigterm = signal.getsignal(signal.SIGTERM)
    logging_config = structlog.get_config()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, sigterm)
        structlog.configure(**logging_config)


def test_fuzz_settings_check_in_process(clean_process_env: None, tmp_path: Path) -> None:
    files = _files(tmp_path)
    ran = {"examples": 0, 0: 0, 1: 0, 2: 0, "slowest": 0.0}
    with refused_ports(5) as ports:

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(_configurations(files, ports))
        def one(config: tuple[dict[str, str], list[str]]) -> None:
            env, argv = config
            out, err = io.StringIO(), io.StringIO()
            started = time.monotonic()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code: object = main(argv, env=env)
                except SystemExit as exc:  # argparse's own errors
                    code = exc.code
            took = time.monotonic() - started
            _check_outcome(code, out.getvalue(), err.getvalue())
            assert took < 2.0, (took, env, argv)
            ran["examples"] += 1
            ran[code] += 1  # type: ignore[index]
            ran["slowest"] = max(ran["slowest"], took)

        one()
    print(f"settings fuzz: {ran['examples']} examples, exit 0/1/2 = "
          f"{ran[0]}/{ran[1]}/{ran[2]}, slowest {ran['slowest']:.2f}s")
    assert ran["examples"] >= min(EXAMPLES, 50)
    assert ran[2] > 0 and ran[0] + ran[1] > 0, ran


def test_fuzz_settings_check_subprocess(tmp_path: Path) -> None:
    files = _files(tmp_path)
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("AWS_", "REDIS_", "DEPWATCH_", "OTEL_"))}  # fmt: skip
    base.update(AWS_EC2_METADATA_DISABLED="true", AWS_SHARED_CREDENTIALS_FILE="/nonexistent",
                AWS_CONFIG_FILE="/nonexistent")  # fmt: skip
    runs: list[float] = []
    with refused_ports(5) as ports:

        @settings(max_examples=6, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(_configurations(files, ports))
        def one(config: tuple[dict[str, str], list[str]]) -> None:
            env, argv = config
            started = time.monotonic()
            done = subprocess.run([sys.executable, "-m", "exporter", *argv],
                                  env={**base, **env}, cwd=REPO, capture_output=True,
                                  text=True, timeout=20, check=False)  # fmt: skip
            took = time.monotonic() - started
            _check_outcome(done.returncode, done.stdout, done.stderr)
            assert took < 2.0, (took, env, argv)
            runs.append(took)

        one()
    print(f"settings fuzz (subprocess): {len(runs)} runs, slowest {max(runs):.2f}s")
    assert len(runs) >= 3


@pytest.mark.parametrize("endpoint", ["http://[::1", "https://[fe80::1:4318/v1/metrics"])
def test_unbalanced_ipv6_endpoint_is_a_config_error(clean_process_env: None,
                                                    endpoint: str) -> None:
    """Found by the fuzzing above (urlsplit raised past the config parser)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["check"], env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    assert code == 2
    assert err.getvalue().startswith("depwatch: invalid OTEL_EXPORTER_OTLP_ENDPOINT")
