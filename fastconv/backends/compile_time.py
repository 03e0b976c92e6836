"""The seconds Numba spends compiling in this process: the numba (and cuda) backends' one-time cost on first use.

Kept apart so that a throughput figure need not count it (the examples print it beside their samples/s). Numba
announces every compilation as a ``numba:compile`` event; a kernel loaded from Numba's on-disk cache is not one.
"""

import time

_state = {"seconds": 0.0, "compilations": 0, "listening": False}


def track():
    """Start counting (idempotent; the numba and cuda backends call it when they load)."""
    if _state["listening"]:
        return
    from numba.core import event

    class _Timer(event.Listener):
        depth, started = 0, 0.0

        def on_start(self, _event):
            if self.depth == 0:
                self.started = time.perf_counter()
            self.depth += 1

        def on_end(self, _event):
            self.depth -= 1
            if self.depth == 0:  # a compilation triggers the compilation of what it calls: count the outermost
                _state["seconds"] += time.perf_counter() - self.started
                _state["compilations"] += 1

    event.register("numba:compile", _Timer())
    _state["listening"] = True


def seconds():
    """Seconds spent compiling since :func:`track` first ran (0.0 if Numba never compiled here)."""
    return _state["seconds"]


def compilations():
    """How many compilations (outermost) those seconds cover."""
    return _state["compilations"]
