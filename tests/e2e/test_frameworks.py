"""The frameworks people run on asyncio, with real packages and real
servers on the loopback: a FastAPI app on uvicorn deadlocked by two
endpoints (named by the requests they serve), anyio's locks and memory
streams, httpx's connection pool waiting for itself; and healthy controls
under load where nothing may be reported. Each sample records its truth
from the interpreter (anyio's own owner records, the pool's requests, the
scope each endpoint serves); live and from a gcore core."""
import json
import shutil
import subprocess

import pytest

import pythons
from harness import Sample, run_snarl


def has(python, modules):
    out = subprocess.run(list(python.argv) + ["-c", "import " + modules], capture_output=True)
    return out.returncode == 0


# The releases the chroot installs these packages for (3.14, and 3.15 where
# they import); not the debug builds, which have no builds of the packages'
# C extensions (pydantic-core, uvloop).
def with_modules(modules):
    return [p for p in pythons.PYTHONS
            if not p.debug and p.minor in ("3.14", "3.15") and has(p, modules)]


FASTAPI = with_modules("fastapi, uvicorn")
ANYIO = with_modules("anyio")
HTTPX = with_modules("httpx, httpcore")
MODES = ["live", "core"]


def sysroot(python):
    return ["--sysroot", python.root] if python.root != "/" else []


def check(python, sample, tmp_path, mode, args=()):
    if mode == "core" and not shutil.which("gcore"):
        pytest.skip("gcore (gdb) not installed")
    with Sample(python, sample, tmp_path, args) as s:
        target = s.gcore(str(tmp_path)) if mode == "core" else s.pid
        out = run_snarl("check", "--format", "json", *sysroot(python), target)
        text = run_snarl("check", *sysroot(python), target)
        return s.truth, out, json.loads(out.stdout), text.stdout.decode()


def ids(ps):
    return [p.label for p in ps]


def the_cycle(out, doc, kind, tasks, resources):
    """The one diagnosis of kind, which must name exactly tasks and
    resources (the sample's truth); and the resources by id."""
    assert out.returncode == 1, out.stderr.decode()
    cycles = [d for d in doc["diagnoses"] if d["kind"] == kind]
    assert len(cycles) == 1, doc["diagnoses"]
    assert sorted(cycles[0]["tasks"]) == sorted(tasks)
    assert sorted(cycles[0]["resources"]) == sorted(resources)
    return cycles[0], {r["id"]: r for r in doc["resources"]}


@pytest.mark.skipif(not FASTAPI, reason="no interpreter with fastapi and uvicorn "
                                        "(python3-fastapi, python3-uvicorn in the chroot)")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("py", FASTAPI, ids=ids(FASTAPI))
def test_fastapi_lock_cycle_is_named_by_its_requests(py, mode, snarl, tmp_path):
    truth, out, doc, text = check(py, "fastapi_deadlock.py", tmp_path, mode)
    handlers = truth["handlers"]
    cycle, _ = the_cycle(out, doc, "lock-cycle", [h["task"] for h in handlers.values()],
                         truth["locks"])
    tasks = {t["id"]: t for t in doc["tasks"]}
    for h in handlers.values():
        want = {"method": h["method"], "path": h["path"], "client": h["client"]}
        assert tasks[h["task"]]["request"] == want
        # The summary and the text report say which request each task serves.
        assert "[GET %s from %s]" % (h["path"], h["client"]) in cycle["summary"]
        assert "[GET %s from %s]" % (h["path"], h["client"]) in text
    # Only the handlers serve requests: uvicorn's other tasks show none.
    served = {t["id"] for t in doc["tasks"] if t["request"]}
    assert served == {h["task"] for h in handlers.values()}


@pytest.mark.skipif(not FASTAPI, reason="no interpreter with fastapi and uvicorn")
@pytest.mark.parametrize("py", FASTAPI, ids=ids(FASTAPI))
def test_every_view_shows_the_request_a_task_serves(py, snarl, tmp_path):
    with Sample(py, "fastapi_deadlock.py", tmp_path) as s:
        views = {}
        for view in (["tasks", "--all"], ["tree"], ["graph", "--format", "dot"],
                     ["graph", "--format", "mermaid"]):
            out = run_snarl(*view, *sysroot(py), s.pid)
            views[" ".join(view)] = out.stdout.decode()
        for name, h in s.truth["handlers"].items():
            out = run_snarl("task", h["task"], *sysroot(py), s.pid)
            views["task " + name] = out.stdout.decode()
        truth = s.truth
    for name, h in truth["handlers"].items():
        for view, text in views.items():
            if view.startswith("task /") and view != "task " + name:
                continue
            # The table cuts long names: the method and the path come first
            # (Mermaid writes the bracket as an entity).
            assert "GET %s" % h["path"] in text, (view, text)


@pytest.mark.skipif(not FASTAPI, reason="no interpreter with fastapi and uvicorn")
@pytest.mark.parametrize("py", FASTAPI, ids=ids(FASTAPI))
def test_a_healthy_uvicorn_server_under_load_reports_nothing(py, snarl, tmp_path):
    truth, out, doc, text = check(py, "fastapi_deadlock.py", tmp_path, "live", ["healthy"])
    assert out.returncode == 0, doc["diagnoses"]
    assert not doc["diagnoses"]


@pytest.mark.skipif(not ANYIO, reason="no interpreter with anyio (python3-anyio in the chroot)")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("py", ANYIO, ids=ids(ANYIO))
def test_anyio_locks_in_opposite_order_are_a_lock_cycle_with_holders(py, mode, snarl, tmp_path):
    truth, out, doc, text = check(py, "anyio_stuck.py", tmp_path, mode, ["locks"])
    cycle, resources = the_cycle(out, doc, "lock-cycle", truth["tasks"], truth["locks"])
    for lock, owner in truth["owners"].items():
        assert resources[lock]["type"] == "anyio.Lock"
        assert resources[lock]["kind"] == "lock"
        assert resources[lock]["holders"] == [owner]
    # start_soon(..., name=) names the asyncio tasks.
    names = sorted(t["name"] for t in doc["tasks"] if t["id"] in truth["tasks"])
    assert names == truth["names"] == ["left", "right"]
    assert "'left'" in cycle["summary"] and "'right'" in cycle["summary"]


@pytest.mark.skipif(not ANYIO, reason="no interpreter with anyio")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("py", ANYIO, ids=ids(ANYIO))
def test_anyio_capacity_limiters_in_opposite_order_are_a_lock_cycle(py, mode, snarl, tmp_path):
    truth, out, doc, text = check(py, "anyio_stuck.py", tmp_path, mode, ["limiters"])
    cycle, resources = the_cycle(out, doc, "lock-cycle", truth["tasks"], truth["limiters"])
    for limiter, borrowers in truth["borrowers"].items():
        assert resources[limiter]["type"] == "anyio.CapacityLimiter"
        assert resources[limiter]["holders"] == borrowers
        assert resources[limiter]["detail"] == "1 of 1 tokens borrowed"


@pytest.mark.skipif(not ANYIO, reason="no interpreter with anyio")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("py", ANYIO, ids=ids(ANYIO))
def test_anyio_semaphore_taken_twice_is_a_reacquire_under_a_waiting_task_group(py, mode, snarl,
                                                                                tmp_path):
    truth, out, doc, text = check(py, "anyio_stuck.py", tmp_path, mode, ["semaphore"])
    assert out.returncode == 1, out.stderr.decode()
    found = [d for d in doc["diagnoses"] if d["kind"] == "lock-reacquire"]
    assert len(found) == 1, doc["diagnoses"]
    assert found[0]["tasks"] == truth["tasks"]
    assert found[0]["resources"] == [truth["semaphore"]]
    tasks = {t["id"]: t for t in doc["tasks"]}
    # The host waits in the task group's __aexit__ for exactly its children.
    waits = tasks[truth["host"]]["waits"]
    assert waits["kind"] == "taskgroup" and waits["type"] == "anyio.TaskGroup"
    (group,) = [r for r in doc["resources"] if r["id"] == waits["id"]]
    assert sorted(group["members"]) == truth["members"]
    for member in truth["members"]:
        assert truth["host"] in tasks[member]["awaited_by"]


@pytest.mark.skipif(not ANYIO, reason="no interpreter with anyio")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("py", ANYIO, ids=ids(ANYIO))
def test_anyio_receiver_whose_sender_is_gone_waits_on_the_stream(py, mode, snarl, tmp_path):
    truth, out, doc, text = check(py, "anyio_stuck.py", tmp_path, mode, ["gone"])
    (consumer,) = [t for t in doc["tasks"] if t["id"] in truth["tasks"]]
    assert consumer["waits"]["kind"] == "queue"
    assert consumer["waits"]["id"] == truth["stream"]
    assert consumer["waits"]["type"] == "anyio.MemoryObjectStream"
    (stream,) = [r for r in doc["resources"] if r["id"] == truth["stream"]]
    # Nobody holds a send end: no task could wake it.
    assert stream["resolvers"] == []
    assert stream["waiters"] == truth["tasks"]
    assert "%d open send" % truth["open_send"] in stream["detail"]
    # Every reference to the state is explained and no send stream is among
    # them: the open send end was dropped without close().
    assert "no send stream object left" in stream["detail"]
    assert not [d for d in doc["diagnoses"] if d["kind"] in ("wake-cycle", "lock-cycle")]
    # The host task sleeps forever (a timer at +inf, which never fires):
    # the loop has nothing left that could wake the consumer.
    asleep = [d for d in doc["diagnoses"] if d["kind"] == "all-asleep"]
    assert len(asleep) == 1 and set(truth["tasks"]) <= set(asleep[0]["tasks"]), doc["diagnoses"]
    assert out.returncode == 1


@pytest.mark.skipif(not ANYIO, reason="no interpreter with anyio")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("py", ANYIO, ids=ids(ANYIO))
def test_anyio_streams_whose_senders_only_the_other_receiver_holds_are_a_wake_cycle(
        py, mode, snarl, tmp_path):
    truth, out, doc, text = check(py, "anyio_stuck.py", tmp_path, mode, ["ring"])
    the_cycle(out, doc, "wake-cycle", truth["tasks"], truth["streams"])
    for stream in (r for r in doc["resources"] if r["id"] in truth["streams"]):
        assert stream["type"] == "anyio.MemoryObjectStream"
        # Its only resolver is the other player, who holds its send end.
        assert len(stream["resolvers"]) == 1 and stream["resolvers"] != stream["waiters"]


@pytest.mark.skipif(not ANYIO, reason="no interpreter with anyio")
@pytest.mark.parametrize("py", ANYIO, ids=ids(ANYIO))
def test_anyio_streams_limiter_and_semaphore_flowing_report_nothing(py, snarl, tmp_path):
    truth, out, doc, text = check(py, "anyio_stuck.py", tmp_path, "live", ["healthy"])
    assert out.returncode == 0, doc["diagnoses"]
    assert not doc["diagnoses"]


@pytest.mark.skipif(not HTTPX, reason="no interpreter with httpx and httpcore "
                                      "(python3-httpx in the chroot)")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("py", HTTPX, ids=ids(HTTPX))
def test_httpx_pool_held_by_its_own_waiter_is_a_self_wait(py, mode, snarl, tmp_path):
    truth, out, doc, text = check(py, "httpx_pool_self_wait.py", tmp_path, mode)
    assert out.returncode == 1, out.stderr.decode()
    found = [d for d in doc["diagnoses"] if d["kind"] == "lock-reacquire"]
    assert len(found) == 1, doc["diagnoses"]
    assert found[0]["tasks"] == [truth["task"]]
    assert found[0]["resources"] == [truth["pool"]]
    (pool,) = [r for r in doc["resources"] if r["id"] == truth["pool"]]
    assert pool["type"] == "httpcore.AsyncConnectionPool"
    assert pool["holders"] == [truth["task"]] and pool["waiters"] == [truth["task"]]
    assert pool["detail"].startswith("%d of 1 connections in use" % truth["active"])


@pytest.mark.skipif(not HTTPX, reason="no interpreter with httpx and httpcore")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("py", HTTPX, ids=ids(HTTPX))
def test_httpx_pool_and_a_lock_in_a_ring_are_a_lock_cycle(py, mode, snarl, tmp_path):
    truth, out, doc, text = check(py, "httpx_pool_self_wait.py", tmp_path, mode, ["cycle"])
    cycle, _ = the_cycle(out, doc, "lock-cycle", truth["tasks"], [truth["lock"], truth["pool"]])
    assert "httpcore.AsyncConnectionPool" in cycle["summary"]
    assert not [d for d in doc["diagnoses"] if d["kind"] == "lock-reacquire"]


AIOHTTP = with_modules("aiohttp")


@pytest.mark.skipif(not AIOHTTP, reason="no interpreter with aiohttp (python3-aiohttp in the chroot)")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("py", AIOHTTP, ids=ids(AIOHTTP))
def test_aiohttp_handlers_show_the_request_they_serve(py, mode, snarl, tmp_path):
    if mode == "core" and not shutil.which("gcore"):
        pytest.skip("gcore (gdb) not installed")
    with Sample(py, "aiohttp_deadlock.py", tmp_path) as s:
        target = s.gcore(str(tmp_path)) if mode == "core" else s.pid
        out = run_snarl("check", "--format", "json", *sysroot(py), target)
        handlers = {task: path for path, task in s.truth["requests"].items()}
    doc = json.loads(out.stdout)
    tasks = {t["id"]: t for t in doc["tasks"]}
    for task, path in handlers.items():
        request = tasks[task]["request"]
        assert request["method"] == "POST" and request["path"] == path, request
        assert request["client"].startswith("127.0.0.1:"), request
    (cycle,) = [d for d in doc["diagnoses"] if d["kind"] == "lock-cycle"]
    for path in handlers.values():
        assert "[POST %s from 127.0.0.1:" % path in cycle["summary"]
