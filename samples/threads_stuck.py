"""Several threads stuck in different places: the shape `snarl stacks` must
reproduce exactly, frame for frame, live and from a core.

- MainThread: blocked on a raw lock inside snarl_sample.settle
- sleeper: in time.sleep (C code, GIL released)
- deadlocked: acquires a lock it already holds (C code)
- recursive: 150 nested calls, then select() on nothing (C code)
- ünïcødé: non-ASCII thread, function, class and file names
- spinner: a pure-Python busy loop, so it is the thread holding the GIL
Run: python3 threads_stuck.py TRUTH.json  (prints READY once settled)
"""
import importlib
import select
import threading
import time

import snarl_sample

unicode_module = importlib.import_module("ünïcødé_模块")

# Deep enough to be a real walk, shallow enough for every recursion limit.
DEPTH = 150


def sleeper(ready):
    ready.set(); time.sleep(3600)  # noqa: E702


def deadlocked(ready):
    lock = threading.Lock()
    lock.acquire()
    ready.set(); lock.acquire()  # noqa: E702


def recursive(ready, depth=DEPTH):
    if depth == 0:
        ready.set(); select.select([], [], [], 3600)  # noqa: E702
        return
    recursive(ready, depth - 1)


def spinner(ready):
    ready.set()
    while True: pass  # noqa: E701  (one line: the frame's line never changes)


def main():
    workers = {
        "sleeper": sleeper,
        "deadlocked": deadlocked,
        "recursive": recursive,
        "ünïcødé": unicode_module.Ωmega().待つ,
        "spinner": spinner,
    }
    expected = {"sleeper": "sleeper", "deadlocked": "deadlocked",
                "recursive": "recursive", "ünïcødé": "ждать_événement",
                "spinner": "spinner"}
    for name, target in workers.items():
        ready = threading.Event()
        threading.Thread(target=target, args=(ready,), name=name, daemon=True).start()
        ready.wait()
    snarl_sample.settle(expected)


if __name__ == "__main__":
    main()
