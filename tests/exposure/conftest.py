"""Fixtures for the exposure tests: a throwaway HTTP server on 127.0.0.1 and the shared data folder."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from exposure_helpers import CONFIG_DIR, FakeServer


@pytest.fixture
def http_server() -> Iterator[FakeServer]:
    server = FakeServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def config_dir() -> Path:
    if not CONFIG_DIR.is_dir():
        pytest.skip(f"shared CSS-Exchange config samples not found at {CONFIG_DIR.resolve()}")
    return CONFIG_DIR
