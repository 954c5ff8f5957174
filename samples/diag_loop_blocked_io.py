"""diag_loop_blocked.py with the task blocker blocked in a blocking
socket's recv() (read_blocking) instead of time.sleep.

Expected diagnoses (exactly):
  loop-blocked  tasks [blocker]   resources []
Exit status 1.
Run: python3 diag_loop_blocked_io.py TRUTH.json  (prints READY once settled)
"""
import diag_loop_blocked

if __name__ == "__main__":
    diag_loop_blocked.run("io")
