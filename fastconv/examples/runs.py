"""What every example script shares: the ``--backend`` and ``--seed`` arguments and what they set, the training time
less Numba's compilation, and how a History is written."""

import json
from pathlib import Path

import fastconv
from fastconv.backends import compile_time
from fastconv.models.atomic import atomic_path
from fastconv.utils import set_random_seed


def add_run_arguments(parser):
    parser.add_argument("--backend", default=None, help="cython (default), numba, reference or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seeds weights, dropout, shuffling and augmentation")


def start_run(args):
    """Select the backend (if one was named) and seed fastconv's random draws."""
    if args.backend:
        fastconv.set_backend(args.backend)
    set_random_seed(args.seed)


def training_time(seconds, compile_seconds):
    """``(seconds of training, a note)``: ``seconds`` of a fit less the one-time Numba compilation that happened in
    it, so that throughput figures count training alone; the note says what was left out ('' when nothing was)."""
    if compile_seconds < 0.5:
        return seconds, ""
    return seconds - compile_seconds, f" (not counting {compile_seconds:.0f} s of one-time Numba compilation)"


def compile_seconds():
    """Seconds of Numba compilation so far in this process (see :mod:`fastconv.backends.compile_time`)."""
    return compile_time.seconds()


def write_history(history, path):
    """A History (or its dict) as JSON at ``path``, written atomically: a run stopped mid-write leaves the previous
    file, never half of one. NaN and infinite values are kept (as JSON's NaN / Infinity, which ``json`` reads back)."""
    logs = getattr(history, "history", history)
    with atomic_path(path) as temporary:
        Path(temporary).write_text(json.dumps(logs, indent=1))
