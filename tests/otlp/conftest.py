"""Fixtures for the OTLP tests: an HTTP session and TLS files (the receivers fixture is
shared, in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from support.otlp_receivers import TlsFiles, make_tls_files

from exporter.probes.otlp_http import new_session


@pytest_asyncio.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_session() as session:
        yield session


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    return make_tls_files(str(tmp_path))
