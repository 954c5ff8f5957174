"""diag_loop_blocked.py with the loop thread blocked in a loop callback
(stall, scheduled with call_soon, calling time.sleep) rather than in a
task: no task is running; sleeper, waiter and Task-N (awaiting a bare
future) wait as in diag_loop_blocked.py.

Expected diagnoses (exactly):
  loop-blocked  tasks []   resources []
Exit status 1.
Run: python3 diag_loop_blocked_callback.py TRUTH.json  (prints READY once settled)
"""
import diag_loop_blocked

if __name__ == "__main__":
    diag_loop_blocked.run("callback")
