"""Synchronous AMQP 0-9-1 client, a drop-in replacement for py-amqp."""
from __future__ import annotations

import re
from typing import NamedTuple

# (``as``: an explicit re-export for type checkers)
from ._version import __version__ as __version__

__homepage__ = 'https://github.com/amqp-project/amqp'
__docformat__ = 'restructuredtext'


class version_info_t(NamedTuple):
    major: int
    minor: int
    micro: int
    releaselevel: str
    serial: str


_m = re.match(r'(\d+)\.(\d+)\.(\d+)(.+)?', __version__)
assert _m is not None, __version__
VERSION = version_info = version_info_t(
    int(_m[1]), int(_m[2]), int(_m[3]), _m[4] or '', '')
del _m, re

from .basic_message import Message  # noqa: E402
from .serialization import speedups as _compiled  # noqa: E402

#: True when the compiled twins (``amqp._speedups``) are in use: built at
#: install time, and not turned off with AMQP_NO_SPEEDUPS=1.
SPEEDUPS = _compiled is not None
del _compiled
from .exceptions import (AccessRefused, AMQPError,  # noqa: E402
                         AMQPNotImplementedError, ChannelError, ChannelNotOpen,
                         ConnectionError, ConnectionForced, ConsumerCancelled,
                         ContentTooLarge, FrameError, FrameSyntaxError,
                         InternalError, InvalidCommand, InvalidPath,
                         IrrecoverableChannelError,
                         IrrecoverableConnectionError, MessageNacked,
                         NoConsumers, NotAllowed, NotFound, PreconditionFailed,
                         RecoverableChannelError, RecoverableConnectionError,
                         ResourceError, ResourceLocked, UnexpectedFrame,
                         error_for_code)

try:  # the public API below needs the I/O layer; keep pure modules importable
    from vine import promise  # noqa: E402
    from .channel import Channel  # noqa: E402
    from .connection import Connection  # noqa: E402
    # sets Connection.recovering_base: Connection(recover=True) works
    from . import recovery  # noqa: E402,F401
    from . import platform, utils  # noqa: E402,F401 - py-amqp's modules
except ImportError as _exc:  # pragma: no cover - during bootstrap only
    if 'amqp.channel' not in str(_exc) and 'amqp.connection' not in str(_exc) \
            and 'amqp.recovery' not in str(_exc):
        raise

__all__ = (
    'Connection', 'Channel', 'Message', 'promise',
    'AMQPError', 'ConnectionError', 'RecoverableConnectionError',
    'IrrecoverableConnectionError', 'ChannelError', 'RecoverableChannelError',
    'IrrecoverableChannelError', 'ConsumerCancelled', 'ContentTooLarge',
    'NoConsumers', 'ConnectionForced', 'InvalidPath', 'AccessRefused',
    'NotFound', 'ResourceLocked', 'PreconditionFailed', 'FrameError',
    'FrameSyntaxError', 'InvalidCommand', 'ChannelNotOpen', 'UnexpectedFrame',
    'ResourceError', 'NotAllowed', 'AMQPNotImplementedError', 'InternalError',
    'MessageNacked', 'error_for_code',
)
