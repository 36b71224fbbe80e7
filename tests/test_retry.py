"""Transient I/O is retried with backoff; deterministic errors fail at once."""

from __future__ import annotations

import pytest

from ltx_ray.storage.retry import is_transient, with_retries


def test_a_flaky_call_succeeds_after_transient_failures():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("connection reset by peer")
        return "ok"

    assert with_retries(flaky, max_wait_s=0.01) == "ok"
    assert len(calls) == 3


def test_a_missing_file_is_not_retried():
    calls = []

    def missing():
        calls.append(1)
        raise FileNotFoundError("nope.png")

    with pytest.raises(FileNotFoundError):
        with_retries(missing, max_wait_s=0.01)
    assert len(calls) == 1


def test_retries_stop_and_reraise_the_last_error():
    calls = []

    def down():
        calls.append(1)
        raise TimeoutError("read timed out")

    with pytest.raises(TimeoutError):
        with_retries(down, attempts=3, max_wait_s=0.01)
    assert len(calls) == 3


@pytest.mark.parametrize(
    "exc, transient",
    [(TimeoutError(), True), (ConnectionError(), True), (OSError("SlowDown"), True),
     (FileNotFoundError(), False), (PermissionError(), False), (ValueError("bad"), False)],
)
def test_which_errors_count_as_transient(exc, transient):
    assert is_transient(exc) is transient
