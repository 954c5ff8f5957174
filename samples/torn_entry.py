"""A thread that enters and leaves the evaluation loop as fast as it can,
for torn-read tests (tests/e2e/test_torn.py): map() calls a Python function
from C, so every item starts an evaluation loop and returns from one.

3.11 and 3.12 publish a loop's C frame before they link its first frame, so
a frozen read can stop the thread in between; its stack must still be this
one, whole, with or without the function map() calls on top.

Writes {"pid": ..., "stack": [[function, line], ...]} (outermost first, as
traceback records it) to argv[1], prints READY from the first call, and runs
until killed.
"""
import collections
import itertools
import json
import os
import sys
import traceback


def called(x):
    # READY once the calls run: a reader must not see the thread still in
    # the line before them.
    if x == 0:
        print("READY", flush=True)
    return x


def calls(truth):
    stack = [[f.name, f.lineno] for f in traceback.extract_stack()]
    stack[-1][1] += 4  # the line that never returns, four below
    with open(truth, "w") as f:
        json.dump({"pid": os.getpid(), "stack": stack}, f)
    collections.deque(map(called, itertools.count()), maxlen=0)


calls(sys.argv[1])
