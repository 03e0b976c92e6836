"""Work that a Ctrl-C must not cut in half: an optimizer step changes every weight, slot and count, or none.

``with held_interrupts():`` — a SIGINT that arrives inside the block is held and delivered (``KeyboardInterrupt``,
or whatever handler the program installed) as soon as the block ends. Signals reach Python's main thread only, so
elsewhere the block is a plain block.
"""

import contextlib
import signal
import threading


@contextlib.contextmanager
def held_interrupts():
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield  # no signal reaches this thread, or a handler installed outside Python that we could not put back
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            _deliver(previous, held[0])


def _deliver(handler, frame):
    """Run what SIGINT would have run outside the block."""
    if callable(handler):
        handler(signal.SIGINT, frame)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signal.SIGINT)
    # SIG_IGN: the program ignores Ctrl-C
