"""Helpers py-amqp exposes as ``amqp.utils``, kept for code importing them.

Compatibility only: nothing on this package's hot paths uses them.
"""
import logging
from functools import wraps
from logging import NullHandler

from vine import promise

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ('str_to_bytes', 'bytes_to_str', 'get_logger', 'get_errno',
           'set_cloexec', 'promise', 'coro', 'NullHandler')


def str_to_bytes(s):
    """UTF-8 bytes of a ``str`` (lone surrogates kept, as py-amqp does);
    anything else is returned unchanged."""
    if isinstance(s, str):
        return s.encode('utf-8', 'surrogatepass')
    return s


def bytes_to_str(s):
    """Text of UTF-8 ``bytes`` (lone surrogates kept); anything else is
    returned unchanged."""
    if isinstance(s, bytes):
        return s.decode('utf-8', 'surrogatepass')
    return s


def get_logger(logger):
    """The logger named ``logger`` (or ``logger`` itself if it is one),
    given a NullHandler when it has no handler yet."""
    if isinstance(logger, str):
        logger = logging.getLogger(logger)
    if not logger.handlers:
        logger.addHandler(NullHandler())
    return logger


def get_errno(exc):
    """The errno of an exception: ``exc.errno``, else the first of two
    ``args`` (old socket errors), else 0."""
    code = getattr(exc, 'errno', None)
    if code is not None:
        return code
    args = getattr(exc, 'args', None)
    if isinstance(args, tuple) and len(args) == 2 and \
            isinstance(args[0], int):
        return args[0]
    return 0


def set_cloexec(fd, cloexec):
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
    flags = fcntl.fcntl(fd, fcntl.F_GETFD)
    flags = flags | flag if cloexec else flags & ~flag
    return fcntl.fcntl(fd, fcntl.F_SETFD, flags)


def coro(gen):
    """Decorate a generator function so that calling it returns the
    generator already advanced to its first ``yield``."""
    @wraps(gen)
    def start(*args, **kwargs):
        co = gen(*args, **kwargs)
        next(co)
        return co
    return start


