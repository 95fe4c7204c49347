from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.llm.fake_providers import FakeProviderServer, RunningServer


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeProviderServer]:
    """The loopback OpenAI/Anthropic server, shared by every test (its behaviour is chosen per URL)."""
    running = RunningServer()
    server = running.start()
    yield server
    running.stop()
