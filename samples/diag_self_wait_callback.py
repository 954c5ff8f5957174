"""diag_self_wait.py from a loop callback: a callback scheduled with
call_soon calls run_coroutine_threadsafe(answer(), loop).result() for its
own loop; no task is running. waiter and Task-N (awaiting a bare future)
wait as in diag_self_wait.py.

Expected diagnoses (exactly):
  loop-self-wait  tasks []   resources [cf]
Exit status 1.
Run: python3 diag_self_wait_callback.py TRUTH.json  (prints READY once settled)
"""
import diag_self_wait

if __name__ == "__main__":
    diag_self_wait.run(True)
