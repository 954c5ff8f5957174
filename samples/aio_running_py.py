"""aio_running.py with the running task `blocker` a pure-Python task
(asyncio.tasks._PyTask): between the loop's Handle._run and blocker's frame
sit Task.__step (and from 3.12 Task.__step_run_and_handle_result), frames
of asyncio that do not belong to the task. Everything else as aio_running.
Run: python3 aio_running_py.py TRUTH.json  (prints READY once settled)
"""
import aio_running

if __name__ == "__main__":
    aio_running.RUNNING_PY_TASK = True
    aio_running.run()
