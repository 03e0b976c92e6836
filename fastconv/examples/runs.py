"""What every example script shares: the ``--backend`` and ``--seed`` arguments, and what they set."""

import fastconv
from fastconv.utils import set_random_seed


def add_run_arguments(parser):
    parser.add_argument("--backend", default=None, help="cython (default), numba, reference or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seeds weights, dropout, shuffling and augmentation")


def start_run(args):
    """Select the backend (if one was named) and seed fastconv's random draws."""
    if args.backend:
        fastconv.set_backend(args.backend)
    set_random_seed(args.seed)
