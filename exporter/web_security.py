"""TLS and basic auth for the HTTP server (exporter-toolkit web config). Stub."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from aiohttp import web

from exporter.config import ConfigError, Settings

__all__ = ["WebSecurity", "load_web_security"]


@dataclass
class WebSecurity:
    middlewares: list[web.Middleware] = field(default_factory=list)
    ssl_context: ssl.SSLContext | None = None


def load_web_security(settings: Settings) -> WebSecurity:
    if settings.web_config_file:
        raise ConfigError("DEPWATCH_WEB_CONFIG_FILE is not supported yet")
    return WebSecurity()
