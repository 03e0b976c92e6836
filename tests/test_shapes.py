"""Property tests of the shape arithmetic every backend shares."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastconv.shapes import normalize_pair, normalize_padding, output_length, same_padding, window_geometry

sizes = st.integers(1, 300)
windows = st.integers(1, 11)
strides = st.integers(1, 5)


@given(sizes, windows, strides)
def test_valid_matches_textbook_formula(length, window, stride):
    """valid: (N - F + 2P) / S + 1 with P = 0, rounded down: windows that do not fit are dropped."""
    if window > length:
        with pytest.raises(ValueError, match="larger than the input"):
            output_length(length, window, stride, "valid")
        return
    out = output_length(length, window, stride, "valid")
    assert out == (length - window + 2 * 0) // stride + 1
    # The last window fits, one more would not.
    assert (out - 1) * stride + window <= length < out * stride + window


@given(sizes, windows, strides)
def test_same_is_ceil_and_padding_covers_exactly(length, window, stride):
    out = output_length(length, window, stride, "same")
    assert out == math.ceil(length / stride)
    before, after = same_padding(length, window, stride)
    assert 0 <= after - before <= 1, "the odd pixel goes to the bottom/right"
    padded = length + before + after
    assert (out - 1) * stride + window <= padded or before + after == 0
    # The padding is the least that lets the last window fit.
    assert before + after == max((out - 1) * stride + window - length, 0)


@given(sizes, st.integers(0, 5).map(lambda half: 2 * half + 1))
def test_same_stride_one_odd_kernel_is_textbook_symmetric_padding(length, window):
    """With stride 1 and an odd kernel, same means P = (F - 1) / 2 each side and size kept."""
    assert same_padding(length, window, 1) == ((window - 1) // 2, (window - 1) // 2)
    assert output_length(length, window, 1, "same") == length


@given(sizes, sizes, st.integers(1, 4), st.integers(1, 4))
def test_pooling_drops_the_last_row_and_column_when_they_do_not_fit(height, width, pool_h, pool_w):
    if pool_h > height or pool_w > width:
        return
    geometry = window_geometry((height, width), (pool_h, pool_w), (pool_h, pool_w), "valid")
    assert (geometry.out_h, geometry.out_w) == (height // pool_h, width // pool_w)
    assert geometry[2:] == (0, 0, 0, 0)


def test_keras_examples():
    # MNIST convnet: 28 -conv3-> 26 -pool2-> 13 -conv3-> 11 -pool2-> 5 -conv3-> 3
    assert output_length(28, 3, 1, "valid") == 26
    assert output_length(26, 2, 2, "valid") == 13
    assert output_length(11, 2, 2, "valid") == 5
    # cats vs dogs: 150 -> 148 -> 74 -> 72 -> 36 -> 34 -> 17 -> 15 -> 7
    assert output_length(17, 2, 2, "valid") == 8
    assert output_length(15, 2, 2, "valid") == 7
    assert window_geometry((5, 5), (3, 3), (2, 2), "same") == (3, 3, 1, 1, 1, 1)
    assert window_geometry((4, 4), (3, 3), (2, 2), "same") == (2, 2, 0, 1, 0, 1)


@pytest.mark.parametrize("bad", [0, -1, (1, 2, 3), "3", (2.0, 2), True, None])
def test_normalize_pair_rejects(bad):
    with pytest.raises(ValueError, match="strides"):
        normalize_pair(bad, "strides")


def test_normalize_padding():
    assert normalize_padding("SAME") == "same"
    with pytest.raises(ValueError, match="'full'"):
        normalize_padding("full")
