"""The numba backend's one-time compilation is measured apart (issue 15), so that the examples' throughput figures
count training alone."""

import numpy as np

from fastconv.backends import compile_time, load_backend
from fastconv.examples.runs import training_time


def test_a_compilation_is_timed_and_a_compiled_call_is_not():
    load_backend("numba")  # starts the count
    from numba import njit

    @njit(cache=False)
    def scaled_sum(values, factor):
        return (values * factor).sum()

    seconds, compilations = compile_time.seconds(), compile_time.compilations()
    assert scaled_sum(np.arange(4.0), 2.0) == 12.0
    first = compile_time.seconds() - seconds
    assert first > 0 and compile_time.compilations() == compilations + 1
    assert scaled_sum(np.arange(5.0), 3.0) == 30.0  # same types: no compilation
    assert compile_time.seconds() - seconds == first and compile_time.compilations() == compilations + 1


def test_the_examples_leave_the_compilation_out_of_their_training_time():
    assert training_time(80.0, 0.0) == (80.0, "")
    seconds, note = training_time(130.0, 52.4)
    assert seconds == 130.0 - 52.4 and note == " (not counting 52 s of one-time Numba compilation)"
