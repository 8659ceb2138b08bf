"""Parsing DEPWATCH_WEB_CONFIG_FILE: what is accepted, what is refused, and how."""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from exporter.config import ConfigError, Settings
from exporter.web_config import load_web_config
from exporter.web_security import load_web_security

WriteConfig = Callable[[str], Path]


def test_no_config_file_means_no_security() -> None:
    security = load_web_security(Settings())
    assert security.middlewares == []
    assert security.ssl_context is None


def test_empty_file_is_plain_http(write_config: WriteConfig) -> None:
    security = load_web_security(Settings(web_config_file=str(write_config(""))))
    assert security.middlewares == []
    assert security.ssl_context is None


def test_full_valid_config(write_config: WriteConfig, pki: Any, hashes: dict[str, str]) -> None:
    pki.server_files()
    path = write_config(f"""
tls_server_config:
  cert_file: server.pem          # relative: resolved against the config file's directory
  key_file: server.key
  client_ca_file: ca.pem
  client_auth_type: RequireAndVerifyClientCert
  client_allowed_sans: [client.test]
  min_version: TLS12
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]
  prefer_server_cipher_suites: false
  curve_preferences: [CurveP256]
http_server_config:
  http2: false
  headers:
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
    Strict-Transport-Security: max-age=31536000
    Content-Security-Policy: ""
basic_auth_users:
  alice: {hashes["alice"]}
  "123": {hashes["bob"]}
rate_limit:
  interval: 100ms
  burst: 5
""")
    config = load_web_config(path)
    assert config.tls is not None
    assert config.tls.cert_file == pki.dir / "server.pem"
    assert config.tls.client_ca_file == pki.dir / "ca.pem"
    assert config.tls.client_auth_type == "RequireAndVerifyClientCert"
    assert config.tls.cipher_suites == ("ECDHE-ECDSA-AES128-GCM-SHA256",
                                        "ECDHE-ECDSA-AES256-GCM-SHA384")  # fmt: skip
    assert config.tls.curve == "prime256v1"
    assert config.headers == {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff",
                              "Strict-Transport-Security": "max-age=31536000"}  # fmt: skip
    assert set(config.users) == {"alice", "123"}
    assert hashes["alice"] not in repr(config)
    assert config.rate_limit is not None
    assert (config.rate_limit.interval, config.rate_limit.burst) == (0.1, 5)

    security = load_web_security(Settings(web_config_file=str(path)))
    ctx = security.ssl_context
    assert ctx is not None
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert not ctx.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    tls12 = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 == ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384"]
    assert len(security.middlewares) == 4  # headers, client SANs, rate limit, basic auth


@pytest.mark.parametrize("memfd", [True, False], ids=["memfd", "tempdir"])
def test_inline_cert_key_and_client_ca(write_config: WriteConfig, pki: Any, memfd: bool,
                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    if not memfd:
        monkeypatch.delattr(os, "memfd_create", raising=False)
    leaf = pki.ca.issue_cert("localhost")

    def block(pem: bytes) -> str:
        return "|\n" + "".join(f"    {line}\n" for line in pem.decode().splitlines())

    path = write_config(
        "tls_server_config:\n"
        f"  cert: {block(leaf.cert_chain_pems[0].bytes())}"
        f"  key: {block(leaf.private_key_pem.bytes())}"
        f"  client_ca: {block(pki.ca.cert_pem.bytes())}"
        "  client_auth_type: VerifyClientCertIfGiven\n"
    )
    security = load_web_security(Settings(web_config_file=str(path)))
    assert security.ssl_context is not None
    assert security.ssl_context.verify_mode == ssl.CERT_OPTIONAL


BAD = [
    # (case id, yaml, key named in the error)
    ("unknown-top-key", "tls_config: {}\n", "tls_config: unknown key"),
    ("unknown-tls-key", "tls_server_config: {certfile: a}\n", "tls_server_config.certfile"),
    ("unknown-http-key", "http_server_config: {http3: true}\n", "http_server_config.http3"),
    ("not-a-mapping", "- a\n- b\n", "(top level): must be a mapping"),
    ("wrong-type-cert", "tls_server_config: {cert_file: 3, key_file: k}\n",
     "tls_server_config.cert_file: must be a string"),
    ("wrong-type-bool", "tls_server_config: {cert_file: c, key_file: k, "
     "prefer_server_cipher_suites: maybe}\n", "prefer_server_cipher_suites: must be true or false"),
    ("cert-without-key", "tls_server_config: {cert_file: c}\n", "tls_server_config.key_file"),
    ("key-without-cert", "tls_server_config: {key_file: k}\n", "tls_server_config.cert_file"),
    ("tls-option-without-cert", "tls_server_config: {min_version: TLS13}\n", "cert_file: missing"),
    ("cert-and-cert-file", "tls_server_config: {cert: x, cert_file: c, key_file: k}\n",
     "tls_server_config.cert: set either cert or cert_file"),
    ("bad-client-auth", "tls_server_config: {cert_file: c, key_file: k, "
     "client_auth_type: RequireAndVerify}\n", "tls_server_config.client_auth_type: one of"),
    ("request-client-cert", "tls_server_config: {cert_file: c, key_file: k, "
     "client_auth_type: RequestClientCert, client_ca_file: ca}\n", "is not supported"),
    ("require-any-client-cert", "tls_server_config: {cert_file: c, key_file: k, "
     "client_auth_type: RequireAnyClientCert, client_ca_file: ca}\n", "is not supported"),
    ("ca-without-client-auth", "tls_server_config: {cert_file: c, key_file: k, "
     "client_ca_file: ca}\n", "client_ca_file: a client CA is set"),
    ("client-auth-without-ca", "tls_server_config: {cert_file: c, key_file: k, "
     "client_auth_type: RequireAndVerifyClientCert}\n", "needs client_ca_file"),
    ("sans-without-verify", "tls_server_config: {cert_file: c, key_file: k, client_ca_file: ca, "
     "client_auth_type: VerifyClientCertIfGiven, client_allowed_sans: [a]}\n",
     "client_allowed_sans: requires"),
    ("tls10", "tls_server_config: {cert_file: c, key_file: k, min_version: TLS10}\n",
     "min_version: TLS10 cannot be negotiated"),
    ("bad-version", "tls_server_config: {cert_file: c, key_file: k, max_version: TLS14}\n",
     "max_version: one of TLS12, TLS13"),
    ("min-above-max", "tls_server_config: {cert_file: c, key_file: k, min_version: TLS13, "
     "max_version: TLS12}\n", "min_version: is higher than max_version"),
    ("unknown-cipher", "tls_server_config: {cert_file: c, key_file: k, "
     "cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]}\n", "unknown cipher suite"),
    ("tls13-cipher", "tls_server_config: {cert_file: c, key_file: k, "
     "cipher_suites: [TLS_AES_128_GCM_SHA256]}\n", "is a TLS 1.3 suite"),
    ("unknown-curve", "tls_server_config: {cert_file: c, key_file: k, "
     "curve_preferences: [CurveP224]}\n", "unknown curve"),
    ("two-curves", "tls_server_config: {cert_file: c, key_file: k, "
     "curve_preferences: [X25519, CurveP256]}\n", "list exactly one"),
    ("http2-true", "http_server_config: {http2: true}\n", "http_server_config.http2: depwatch"),
    ("forbidden-header", "http_server_config: {headers: {Server: x}}\n",
     "http_server_config.headers.Server: unknown key"),
    ("header-case", "http_server_config: {headers: {x-frame-options: deny}}\n",
     "headers.x-frame-options: unknown key"),
    ("bad-frame-options", "http_server_config: {headers: {X-Frame-Options: allow}}\n",
     "X-Frame-Options: must be one of deny, sameorigin"),
    ("bad-content-type-options", "http_server_config: {headers: {X-Content-Type-Options: x}}\n",
     "X-Content-Type-Options: must be one of nosniff"),
    ("users-not-mapping", "basic_auth_users: [alice]\n", "basic_auth_users: must be a mapping"),
    ("user-not-string", "basic_auth_users: {yes: x}\n", "user name True is a YAML bool"),
    ("hash-not-string", "basic_auth_users: {alice: 12}\n", "basic_auth_users.alice: not a bcrypt"),
    ("rate-limit-int-interval", "rate_limit: {interval: 5, burst: 1}\n", "rate_limit.interval"),
    ("rate-limit-no-burst", "rate_limit: {interval: 1s}\n", "rate_limit.burst"),
    ("rate-limit-burst-only", "rate_limit: {burst: 3}\n", "rate_limit.burst: is set but"),
    ("duplicate-user", "basic_auth_users:\n  alice: x\n  alice: y\n", "alice: duplicate key"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_invalid_config_is_one_line_naming_the_key(write_config: WriteConfig, text: str,
                                                   expected: str) -> None:  # fmt: skip
    path = write_config(text)
    with pytest.raises(ConfigError) as info:
        load_web_security(Settings(web_config_file=str(path)))
    message = str(info.value)
    assert message.startswith(f"invalid DEPWATCH_WEB_CONFIG_FILE '{path}': ")
    assert expected in message
    assert "\n" not in message


BAD_HASHES = [
    "$2y$10$tooShort",
    "$2y$03$" + "a" * 53,  # cost below 4
    "$2q$10$" + "a" * 53,  # unknown variant
    "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
    "plaintext-password",
    "$2y$10$" + "!" * 53,
]


@pytest.mark.parametrize("bad_hash", BAD_HASHES)
def test_bad_hash_is_refused_without_echoing_it(write_config: WriteConfig, bad_hash: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_web_config(write_config(f"basic_auth_users:\n  alice: '{bad_hash}'\n"))
    assert "basic_auth_users.alice: not a bcrypt hash" in str(info.value)
    assert bad_hash not in str(info.value)


def test_yaml_error_shows_position_not_source(write_config: WriteConfig,
                                              hashes: dict[str, str]) -> None:  # fmt: skip
    with pytest.raises(ConfigError) as info:
        load_web_config(write_config(f"basic_auth_users:\n  alice: {hashes['alice']}: [\n"))
    message = str(info.value)
    assert "YAML:" in message
    assert "line 2" in message
    assert hashes["alice"] not in message
    assert "\n" not in message


def test_missing_key_file(write_config: WriteConfig, pki: Any) -> None:
    pki.server_files()
    path = write_config("tls_server_config: {cert_file: server.pem, key_file: nope.key}\n")
    with pytest.raises(ConfigError, match=r"tls_server_config\.key_file: cannot read "
                       r"'.*nope\.key': No such file or directory"):  # fmt: skip
        load_web_security(Settings(web_config_file=str(path)))


def test_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"DEPWATCH_WEB_CONFIG_FILE .*cannot read the file"):
        load_web_security(Settings(web_config_file=str(tmp_path / "missing.yml")))


def test_mismatched_cert_and_key(write_config: WriteConfig, pki: Any) -> None:
    pki.server_files("one")
    pki.server_files("two")
    path = write_config("tls_server_config: {cert_file: one.pem, key_file: two.key}\n")
    with pytest.raises(ConfigError, match=r"tls_server_config\.key_file: does not match"):
        load_web_security(Settings(web_config_file=str(path)))


def test_garbage_certificate(write_config: WriteConfig, pki: Any) -> None:
    pki.server_files()
    (pki.dir / "server.pem").write_text("not a certificate\n")
    path = write_config("tls_server_config: {cert_file: server.pem, key_file: server.key}\n")
    with pytest.raises(ConfigError, match=r"tls_server_config\.cert_file: not a PEM certificate"):
        load_web_security(Settings(web_config_file=str(path)))


def test_encrypted_key_fails_instead_of_prompting(write_config: WriteConfig, pki: Any) -> None:
    leaf = pki.ca.issue_cert("localhost")
    pki.write(leaf, "server")
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"pw"))  # fmt: skip
    (pki.dir / "server.key").write_bytes(encrypted)
    path = write_config("tls_server_config: {cert_file: server.pem, key_file: server.key}\n")
    with pytest.raises(ConfigError, match="key_file: encrypted private keys are not supported"):
        load_web_security(Settings(web_config_file=str(path)))


def test_inline_key_never_in_error(write_config: WriteConfig, pki: Any) -> None:
    other = trustme.CA().issue_cert("localhost")
    key_pem = other.private_key_pem.bytes().decode()
    indented = "".join(f"    {line}\n" for line in key_pem.splitlines())
    pki.server_files()
    path = write_config(f"tls_server_config:\n  cert_file: server.pem\n  key: |\n{indented}")
    with pytest.raises(ConfigError, match=r"tls_server_config\.key: does not match") as info:
        load_web_security(Settings(web_config_file=str(path)))
    assert "PRIVATE KEY" not in str(info.value)


def test_client_ca_without_certificates(write_config: WriteConfig, pki: Any) -> None:
    pki.server_files()
    (pki.dir / "empty-ca.pem").write_text("# nothing here\n")
    path = write_config("tls_server_config: {cert_file: server.pem, key_file: server.key, "
                        "client_ca_file: empty-ca.pem, "
                        "client_auth_type: RequireAndVerifyClientCert}\n")  # fmt: skip
    with pytest.raises(ConfigError, match="client_ca_file: contains no PEM certificate"):
        load_web_security(Settings(web_config_file=str(path)))


def test_yaml_anchors_and_merge_keys(write_config: WriteConfig, hashes: dict[str, str]) -> None:
    config = load_web_config(write_config(f"""
http_server_config:
  headers: &base
    X-Frame-Options: deny
    X-Content-Type-Options: nosniff
basic_auth_users:
  alice: &h {hashes["alice"]}
  carol: *h
rate_limit:
  <<: {{interval: 1s, burst: 1}}
  burst: 3
"""))
    assert set(config.users) == {"alice", "carol"}
    assert config.rate_limit is not None
    assert config.rate_limit.burst == 3


def test_absolute_paths_are_kept(write_config: WriteConfig, pki: Any, tmp_path: Path) -> None:
    cert, key = pki.server_files()
    path = write_config(f"tls_server_config: {{cert_file: '{cert}', key_file: '{key}'}}\n")
    config = load_web_config(path)
    assert config.tls is not None
    assert (config.tls.cert_file, config.tls.key_file) == (cert, key)
