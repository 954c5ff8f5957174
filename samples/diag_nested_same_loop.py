"""nested-loop, the same loop re-entered: the task nester calls a plain
function that clears loop._thread_id, hides the running loop and calls
loop.run_forever() again (nest_asyncio's shape). Two
BaseEventLoop.run_forever frames of the same loop on the main thread's
stack (checked before READY); the inner run idles in the selector. A
plain timer (call_later(3600)) keeps the loop from being asleep for good.
There is no sleeping task here: a task of this loop could not be stepped
inside the nested run.

nester   running: inside the nested run_forever; the loop's running task
Task-N   the asyncio.run main task: awaits nester directly

Expected diagnoses (exactly):
  nested-loop  tasks [nester]   resources []   loop: the loop
Exit status 1.
Run: python3 diag_nested_same_loop.py TRUTH.json  (prints READY once settled)
"""
import diag_nested_loop

if __name__ == "__main__":
    diag_nested_loop.run(True)
