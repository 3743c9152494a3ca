"""Fixtures for the sandbox: one small company per session, simulators on free loopback ports."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import pytest

from sophia_lib.sandbox.company import Company
from sophia_lib.sandbox.simulator.app import Sandbox
from sophia_lib.sandbox.simulator.server import SandboxServer


@pytest.fixture(scope="session")
def small_company() -> Company:
    """The seeded small company. Read-only: tests that advance time use ``fresh_company``."""
    from sophia_lib.sandbox.generator import generate

    return generate("small", seed=42)


@pytest.fixture
def fresh_company(small_company: Company) -> Company:
    """A private copy of the small company that a test may advance or mutate."""
    return copy.deepcopy(small_company)


@pytest.fixture
def serve() -> Iterator[Callable[..., SandboxServer]]:
    """``serve(company, ["slack"])`` starts a simulator for those vendors; stopped after the test."""
    started: list[SandboxServer] = []

    def start(company: Company, vendors: list[str] | None = None) -> SandboxServer:
        server = SandboxServer(Sandbox(company, vendors=vendors)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
