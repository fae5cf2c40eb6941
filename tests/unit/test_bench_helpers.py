"""The bench's pure parts (bench/proc.py): the figures in its tables stand on these."""

from __future__ import annotations

import os
import threading

import pytest

from bench.proc import TICK, cpu_s, knee, percentile, stat_cpu_ticks, thread_cpu_s


def test_cpu_ticks_are_read_after_the_last_parenthesis_of_a_name_with_spaces_and_parentheses():
    line = "4242 (dramatiq: worker (1) x) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 9 0 100 1 1"
    assert stat_cpu_ticks(line) == 175  # utime 150 + stime 25, fields 14 and 15


def test_this_process_and_its_threads_have_cpu_times_that_add_up():
    busy = threading.Event()

    def spin() -> None:
        n = 0
        while not busy.is_set():
            n += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        threads = thread_cpu_s()
        assert threading.get_native_id() in threads and spinner.native_id in threads
    finally:
        busy.set()
        spinner.join()
    assert cpu_s(os.getpid()) >= 0 and TICK > 0
    assert cpu_s(2**22 + 12345) == 0.0  # no such process


@pytest.mark.parametrize(("q", "expected"), [(0.0, 1), (0.5, 51), (0.95, 96), (0.99, 100), (1.0, 100)])
def test_percentiles_are_nearest_rank(q, expected):
    assert percentile(list(range(100, 0, -1)), q) == expected


def test_a_percentile_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        percentile([], 0.5)


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([(50, 49.5, 100), (100, 99, 110), (200, 198, 120), (400, 396, 150)], None),  # kept up everywhere
        ([(50, 49.5, 100), (100, 99, 110), (200, 150, 400), (400, 160, 9000)], 200),  # fell behind at 200
        ([(100, 99, 110), (50, 49.5, 100), (200, 199, 250), (400, 396, 900)], 200),  # latency turned up first
        ([], None),
    ],
)
def test_the_knee_is_the_first_rate_not_kept_up_with(points, expected):
    assert knee(points, keep_up=0.9) == expected
