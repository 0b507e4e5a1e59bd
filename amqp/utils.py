"""Helpers py-amqp exposes as ``amqp.utils``, kept for code importing them.

Compatibility only: nothing on this package's hot paths uses them.
"""
from __future__ import annotations

import logging
from functools import wraps
from logging import NullHandler
from types import ModuleType
from typing import (Any, Callable, Generator, Optional, TypeVar, Union,
                    overload)

from vine import promise

fcntl: Optional[ModuleType]
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ('str_to_bytes', 'bytes_to_str', 'get_logger', 'get_errno',
           'set_cloexec', 'promise', 'coro', 'NullHandler')


_T = TypeVar('_T')
_Y = TypeVar('_Y')
_S = TypeVar('_S')
_R = TypeVar('_R')


@overload
def str_to_bytes(s: str) -> bytes: ...
@overload
def str_to_bytes(s: _T) -> _T: ...


def str_to_bytes(s: object) -> object:
    """UTF-8 bytes of a ``str`` (lone surrogates kept, as py-amqp does);
    anything else is returned unchanged."""
    if isinstance(s, str):
        return s.encode('utf-8', 'surrogatepass')
    return s


@overload
def bytes_to_str(s: bytes) -> str: ...
@overload
def bytes_to_str(s: _T) -> _T: ...


def bytes_to_str(s: object) -> object:
    """Text of UTF-8 ``bytes`` (lone surrogates kept); anything else is
    returned unchanged."""
    if isinstance(s, bytes):
        return s.decode('utf-8', 'surrogatepass')
    return s


def get_logger(logger: Union[str, logging.Logger]) -> logging.Logger:
    """The logger named ``logger`` (or ``logger`` itself if it is one),
    given a NullHandler when it has no handler yet."""
    if isinstance(logger, str):
        logger = logging.getLogger(logger)
    if not logger.handlers:
        logger.addHandler(NullHandler())
    return logger


def get_errno(exc: object) -> int:
    """The errno of an exception: ``exc.errno``, else the first of two
    ``args`` (old socket errors), else 0."""
    code: Optional[int] = getattr(exc, 'errno', None)
    if code is not None:
        return code
    args = getattr(exc, 'args', None)
    if isinstance(args, tuple) and len(args) == 2 and \
            isinstance(args[0], int):
        return args[0]
    return 0


def set_cloexec(fd: int, cloexec: bool) -> Optional[int]:
    """Set or clear close-on-exec on file descriptor ``fd``.

    Does nothing where ``fcntl`` is missing; raises NotImplementedError
    where it exists without ``FD_CLOEXEC``.
    """
    if fcntl is None:
        return None
    flag = getattr(fcntl, 'FD_CLOEXEC', None)
    if flag is None:
        raise NotImplementedError(
            'close-on-exec flag not supported on this platform')
    flags: int = fcntl.fcntl(fd, fcntl.F_GETFD)
    flags = flags | flag if cloexec else flags & ~flag
    result: int = fcntl.fcntl(fd, fcntl.F_SETFD, flags)
    return result


def coro(gen: Callable[..., Generator[_Y, _S, _R]]
         ) -> Callable[..., Generator[_Y, _S, _R]]:
    """Decorate a generator function so that calling it returns the
    generator already advanced to its first ``yield``."""
    @wraps(gen)
    def start(*args: Any, **kwargs: Any) -> Generator[_Y, _S, _R]:
        co = gen(*args, **kwargs)
        next(co)
        return co
    return start


