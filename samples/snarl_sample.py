"""Shared by the samples: settle into a known stuck state, record the ground
truth the interpreter itself reports, signal readiness, and block forever.

A sample calls settle(expected) once its threads are on their way to their
blocking calls; expected maps thread names to the function each one must be
blocked in. The truth is what sys._current_frames() says, written as JSON to
the path in argv[1]; "READY" on stdout tells the test it may look.
"""
import json
import sys
import threading
import time
import _thread

# How long a thread may take to reach its blocking call before the sample
# gives up (a test on a loaded machine must still settle).
SETTLE_TIMEOUT = 60.0
# Two polls this far apart must agree before the state counts as settled.
STABLE_INTERVAL = 0.05

_BLOCK = _thread.allocate_lock()
_BLOCK.acquire()
_WATCH_BLOCK = _thread.allocate_lock()
_WATCH_BLOCK.acquire()
# The thread that prints READY; not part of the recorded truth.
WATCHER = "snarl-sample-watcher"


def _stack(frame):
    out = []
    while frame is not None:
        code = frame.f_code
        out.append({"function": code.co_qualname, "file": code.co_filename,
                    "line": frame.f_lineno})
        frame = frame.f_back
    return out


def _record(frames):
    by_ident = {t.ident: t for t in threading.enumerate()}
    threads = []
    for ident, frame in frames.items():
        thread = by_ident.get(ident)
        if thread is not None and thread.name == WATCHER:
            continue
        threads.append({
            "native_id": thread.native_id if thread else None,
            "name": thread.name if thread else None,
            "stack": _stack(frame),
        })
    truth = {"python": "%d.%d.%d" % sys.version_info[:3], "pid": _os_getpid(),
             "threads": threads}
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        json.dump(truth, f, ensure_ascii=False, indent=1)


def _watch(main_ident):
    """Says READY once the main thread is back in settle(), on the line where
    it blocks: its stack then equals the one recorded."""
    while True:
        frame = sys._current_frames().get(main_ident)
        if frame is not None and frame.f_code.co_name == "settle":
            break
        time.sleep(0.005)
    print("READY", flush=True); _WATCH_BLOCK.acquire()  # noqa: E702


def _os_getpid():
    import os
    return os.getpid()


def _tops(expected):
    """Where each expected thread is now, or None if one is not there yet."""
    frames = sys._current_frames()
    names = {t.ident: t.name for t in threading.enumerate()}
    tops = {}
    for ident, frame in frames.items():
        name = names.get(ident)
        if name in expected:
            if frame.f_code.co_name != expected[name]:
                return None
            tops[name] = frame.f_lineno
    return tops if set(tops) == set(expected) else None


def settle(expected):
    """Waits until every thread named in expected sits in its function, then
    records the truth and blocks the calling thread for good."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    previous = None
    while True:
        # Settled means: every thread in its function, on the same line in
        # two polls a while apart (a thread that still runs would move).
        tops = _tops(expected)
        if tops is not None and tops == previous:
            break
        previous = tops
        if time.monotonic() > deadline:
            raise SystemExit("sample did not settle: %r" % expected)
        time.sleep(STABLE_INTERVAL)
    threading.Thread(target=_watch, args=(threading.get_ident(),), name=WATCHER,
                     daemon=True).start()
    # One line on purpose: the frame recorded and the frame that blocks are
    # the same frame at the same line.
    frames = sys._current_frames(); _record(frames); _BLOCK.acquire()  # noqa: E702
