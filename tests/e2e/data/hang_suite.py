"""A small test suite with hanging asyncio tests, for the pytest plugin's
test (tests/e2e/test_pytest_plugin.py); not collected by the project's own
run (tests/e2e/data is a data directory). Each hanging test records its
tasks' names and ids in $HANG_TRUTH_DIR/<test>.json before it blocks, so
the plugin's report can be checked against them.
"""
import asyncio
import json
import os

import pytest


def _record(name, tasks):
    path = os.path.join(os.environ["HANG_TRUTH_DIR"], name + ".json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({t.get_name(): "0x%x" % id(t) for t in tasks}, f)


async def _lock_cycle(name):
    first, second = asyncio.Lock(), asyncio.Lock()
    ready = asyncio.Event()

    async def ordered(a, b):
        async with a:
            await asyncio.sleep(0)
            ready.set()
            async with b:
                pass

    tasks = [asyncio.create_task(ordered(first, second), name="left"),
             asyncio.create_task(ordered(second, first), name="right")]
    await ready.wait()
    _record(name, tasks)
    await asyncio.gather(*tasks)


def test_passes_quickly():
    assert asyncio.run(asyncio.sleep(0, result=7)) == 7


@pytest.mark.timeout(3)
def test_lock_cycle_under_pytest_timeout():
    asyncio.run(_lock_cycle("test_lock_cycle_under_pytest_timeout"))


@pytest.mark.timeout(3, method="thread")
def test_lock_cycle_under_pytest_timeout_thread_method():
    asyncio.run(_lock_cycle("test_lock_cycle_under_pytest_timeout_thread_method"))


@pytest.mark.snarl_timeout(3)
def test_waits_forever_under_snarl_timeout():
    async def main():
        waiter = asyncio.create_task(asyncio.Event().wait(), name="forever")
        await asyncio.sleep(0)
        _record("test_waits_forever_under_snarl_timeout", [waiter])
        await waiter

    asyncio.run(main())
