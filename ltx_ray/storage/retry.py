"""Retry what is transient (a dropped connection, a throttled PUT); never what is deterministic.

A missing file or a permission error will fail the same way every time, so retrying it
only delays the row's error. A timeout or a reset connection often passes on the next try.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

T = TypeVar("T")

_DETERMINISTIC_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)


def is_transient(exc: BaseException) -> bool:
    """True for errors that may pass on a retry: network and server-side hiccups."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, _DETERMINISTIC_OS_ERRORS):
        return False
    if isinstance(exc, OSError):
        # s3fs and gcsfs raise plain OSError for throttling / 5xx after their own retries
        return True
    name = type(exc).__name__
    return name in {"ClientConnectorError", "ServerDisconnectedError", "ClientOSError", "ClientPayloadError"}


def with_retries(fn: Callable[[], T], *, attempts: int = 4, max_wait_s: float = 5.0) -> T:
    """Call ``fn``; retry transient failures with exponential backoff, re-raise the last one."""
    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.2, max=max_wait_s),
        reraise=True,
    )
    return retrying(fn)
