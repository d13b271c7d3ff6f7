"""Gateway tests run against the real in-process node on a scratch directory.

Async tests run on uvloop, as the gateway does in production; pytest-asyncio is not
needed for that, one hook is enough.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

import pytest
import uvloop
from gwtest import OpenRegistry, registry_opener


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    test = pyfuncitem.obj
    if not inspect.iscoroutinefunction(test):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(test(**kwargs))
    return True


@pytest.fixture
def open_registry(tmp_path: Path) -> OpenRegistry:
    return registry_opener(tmp_path / "node")
