"""thread-lock-cycle: two threads take two threading locks in opposite
order (argv[2]: "lock" for threading.Lock, "rlock" for threading.RLock).

left      `with a:` ... `with b:`: holds a, waits for b
right     `with b:` ... `with a:`: holds b, waits for a
bystander `with a:` after both settled: waits for a (held by left) but
          holds nothing: it waits on the cycle without being in it
idle      waits on an Event nobody sets: a waiter, in no cycle

Expected diagnosis (exactly): thread-lock-cycle threads [left, right]
resources [a, b]. Exit status 1; the text report says "Found one
Python-level deadlock".
Run: python3 threads_lock_order.py TRUTH.json lock|rlock  (prints READY)
"""
import sys
import threading

import thread_truth

T = thread_truth.ThreadTruth()
kind = sys.argv[2] if len(sys.argv) > 2 else "lock"
make = threading.RLock if kind == "rlock" else threading.Lock
a, b = make(), make()
both = threading.Barrier(2)
never = threading.Event()


def ordered(first, second):
    with first:
        T.held(first)
        both.wait()
        with second:
            pass


def bystander():
    with a:
        pass


left = threading.Thread(target=ordered, args=(a, b), name="left", daemon=True)
right = threading.Thread(target=ordered, args=(b, a), name="right", daemon=True)
by = threading.Thread(target=bystander, name="bystander", daemon=True)
idle = threading.Thread(target=never.wait, name="idle", daemon=True)
left.start()
right.start()
idle.start()
T.expect_wait(left, "ordered", b)
T.expect_wait(right, "ordered", a)
T.expect_wait(idle, "wait", never)
T.expect_diagnosis("thread-lock-cycle", resources=[a, b], threads=[left, right])


def start_bystander():
    by.start()
    T.expect_wait(by, "bystander", a)
    while sys._current_frames().get(by.ident) is None or \
            sys._current_frames()[by.ident].f_code.co_name != "bystander":
        pass


T.ready(then=start_bystander)
left.join()
