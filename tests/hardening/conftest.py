"""Fixtures for the hardening tests (tier 2/3): OTLP stand-ins and raw hostile servers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from support.otlp_receivers import Receivers


@pytest_asyncio.fixture
async def receivers() -> AsyncIterator[Receivers]:
    """OTLP receivers and raw TCP servers on 127.0.0.1, all stopped after the test."""
    started = Receivers()
    try:
        yield started
    finally:
        await started.stop()
