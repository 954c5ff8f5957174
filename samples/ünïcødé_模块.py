"""A module with a non-ASCII file name and non-ASCII function names, imported
by threads_stuck.py: snarl must print both exactly as Python does."""
import time


def ждать_événement(ready):
    ready.set(); time.sleep(3600)  # noqa: E702


class Ωmega:
    def 待つ(self, ready):
        return ждать_événement(ready)
