"""Platform facts py-amqp exposes as ``amqp.platform``, and the socket
constants its ``amqp.transport`` exports (``amqp.transport`` re-exports
them from here).

Compatibility only: the names, values and platform rules match py-amqp 5.x,
so code that builds ``socket_settings`` from ``KNOWN_TCP_OPTS`` or reads
``LINUX_VERSION`` keeps working.
"""
from __future__ import annotations

import platform as _platform
import re
import sys
from typing import Dict, Optional, Set, Tuple

from . import spec
from .utils import set_cloexec

try:
    from socket import SOL_TCP
except ImportError:  # pragma: no cover - platforms without SOL_TCP
    from socket import IPPROTO_TCP as SOL_TCP

__all__ = (
    'LINUX_VERSION', 'SOL_TCP', 'KNOWN_TCP_OPTS',
    # what py-amqp's amqp.transport exports besides those
    'DEFAULT_SOCKET_SETTINGS', 'AMQP_PROTOCOL_HEADER', 'SIGNED_INT_MAX',
    'set_cloexec',
)

_LEADING_NUMBER = re.compile(r'(\d+).+')


def _versionatom(s: str) -> int:
    """One part of a release string as an int ('37-generic' -> 37)."""
    if s.isdigit():
        return int(s)
    match = _LEADING_NUMBER.match(s)
    return int(match.group(1)) if match else 0


def _linux_version_to_tuple(s: str) -> Tuple[int, ...]:
    """'5.10.0-28-amd64' -> (5, 10, 0)."""
    return tuple(_versionatom(part) for part in s.split('.')[:3])


def _known_tcp_opts(platform_name: str, release: str) -> Set[str]:
    """The TCP-level socket options py-amqp lets ``socket_settings`` set on
    this platform (by name; those the platform lacks or refuses are left
    out)."""
    opts = {'TCP_CORK', 'TCP_DEFER_ACCEPT', 'TCP_KEEPCNT', 'TCP_KEEPIDLE',
            'TCP_KEEPINTVL', 'TCP_LINGER2', 'TCP_MAXSEG', 'TCP_NODELAY',
            'TCP_QUICKACK', 'TCP_SYNCNT', 'TCP_USER_TIMEOUT',
            'TCP_WINDOW_CLAMP'}
    if platform_name.startswith('linux'):
        if _linux_version_to_tuple(release) < (2, 6, 37):
            opts.discard('TCP_USER_TIMEOUT')
        if release.endswith('Microsoft'):  # WSL 1 reports options it lacks
            opts = {'TCP_NODELAY', 'TCP_KEEPIDLE', 'TCP_KEEPINTVL',
                    'TCP_KEEPCNT'}
    elif platform_name.startswith('darwin') or 'bsd' in platform_name:
        opts.discard('TCP_USER_TIMEOUT')
    elif platform_name.startswith(('win', 'cygwin')):
        opts = {'TCP_NODELAY'}
    elif platform_name.startswith(('sunos', 'aix')):
        opts -= {'TCP_MAXSEG', 'TCP_USER_TIMEOUT'}
    return opts


#: (major, minor, patch) of the Linux kernel, None elsewhere.
LINUX_VERSION: Optional[Tuple[int, ...]] = (
    _linux_version_to_tuple(_platform.release())
    if sys.platform.startswith('linux') else None)

#: Names of the socket options under SOL_TCP py-amqp knows how to set here.
KNOWN_TCP_OPTS = _known_tcp_opts(sys.platform, _platform.release())

#: py-amqp's default TCP options (option name -> value); a name missing
#: from KNOWN_TCP_OPTS or from the socket module is skipped when applied.
DEFAULT_SOCKET_SETTINGS: Dict[str, int] = {
    'TCP_NODELAY': 1,
    'TCP_USER_TIMEOUT': 1000,
    'TCP_KEEPIDLE': 60,
    'TCP_KEEPINTVL': 10,
    'TCP_KEEPCNT': 9,
}

#: The 8 bytes a client sends first (AMQP 0-9-1 section 4.2.2).
AMQP_PROTOCOL_HEADER = spec.PROTOCOL_HEADER

#: Largest signed 32-bit int (py-amqp caps socket timeouts with it).
SIGNED_INT_MAX = 0x7FFFFFFF
