"""The connection handshake (AMQP 0-9-1 section 2.2.4): choosing the
login mechanisms, answering connection.start, secure and tune, and the
connection URL.

:class:`Handshake` is a part of :class:`~amqp.connection.Connection` (its
base class), kept in a module of its own; it has no use alone.
"""
from __future__ import annotations

import logging
from time import monotonic
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterable, List,
                    Optional, Tuple, Type, TypeVar, Union, cast)
from urllib.parse import parse_qsl, unquote, urlsplit

from . import sasl, spec
from .abstract_channel import AbstractChannel, ChannelIdsLike
from .exceptions import ConnectionError, FrameError, InvalidCommand

if TYPE_CHECKING:
    from vine import promise

    from .reader import Reader
    from .serialization import EncodableTable, EncodableValue, FieldTable
    from .transport import AbstractTransport

__all__ = ('Handshake',)

logger = logging.getLogger('amqp')

_H = TypeVar('_H', bound='Handshake')

_MECHANISMS: Dict[str, Callable[[Optional[str], Optional[str]],
                                 sasl.SASL]] = {
    'PLAIN': lambda user, pw: sasl.PLAIN(user, pw),
    'AMQPLAIN': lambda user, pw: sasl.AMQPLAIN(user, pw),
    'EXTERNAL': lambda user, pw: sasl.EXTERNAL(),
    'GSSAPI': lambda user, pw: sasl.GSSAPI(user),
}



def url_options(url: str) -> Dict[str, Any]:
    """The keyword arguments of a Connection that an ``amqp://`` or
    ``amqps://`` URL names (see :meth:`Handshake.from_url`)."""
    parts = urlsplit(url)
    if parts.scheme not in ('amqp', 'amqps', 'pyamqp'):
        raise ValueError('unsupported URL scheme %r (expected amqp:// or '
                         'amqps://)' % parts.scheme)
    secure = parts.scheme == 'amqps'
    try:
        if '@' in url[url.index('//') + 2:] and '@' not in parts.netloc:
            raise ValueError('"@" after the host')
        port = parts.port or (5671 if secure else 5672)
    except ValueError:
        # urlsplit's message would quote the "port", which is often a
        # piece of the password: say what is wrong without it.
        raise ValueError(
            'cannot parse the host and port of this AMQP URL; a user '
            'name or password containing "/", "?", "#" or "@" must be '
            'percent-encoded (e.g. "/" as %2F)') from None
    host = parts.hostname or 'localhost'
    if ':' in host:
        host = '[%s]' % host
    opts: Dict[str, Any] = {
        'host': '%s:%d' % (host, port),
        'userid': unquote(parts.username) if parts.username is not None
        else 'guest',
        'password': unquote(parts.password) if parts.password is not None
        else 'guest',
        'virtual_host': unquote(parts.path[1:]) if len(parts.path) > 1
        else '/',
    }
    if secure:
        opts['ssl'] = True
    for key, value in parse_qsl(parts.query):
        opts[key] = _coerce(value)
    return opts


class Handshake(AbstractChannel):
    """Login mechanisms, connection.start/secure/tune/open-ok handlers and
    :meth:`from_url`, for :class:`~amqp.connection.Connection`."""

    # Set by Connection (declared for type checkers).
    authentication: Tuple[sasl.SASL, ...]
    client_properties: Dict[str, EncodableValue]
    negotiate_capabilities: Dict[str, bool]
    server_properties: FieldTable
    mechanisms: List[bytes]
    locales: List[str]
    locale: str
    version_major: int
    version_minor: int
    channel_max: int
    channel_ids: ChannelIdsLike
    frame_max: int
    client_heartbeat: float
    server_heartbeat: Optional[int]
    heartbeat: float
    last_heartbeat_sent: float
    last_heartbeat_received: float
    virtual_host: str
    host: str
    on_tune_ok: promise
    on_open: promise
    _reader: Reader
    _handshake_complete: bool
    _auth: sasl.SASL

    if TYPE_CHECKING:
        @property
        def transport(self) -> Optional[AbstractTransport]: ...

    @staticmethod
    def _select_auth(authentication: Union[sasl.SASL, Iterable[sasl.SASL]],
                     login_method: Optional[str],
                     login_response: Union[str, bytes, None],
                     userid: Optional[str], password: Optional[str]
                     ) -> Tuple[sasl.SASL, ...]:
        if authentication:
            if isinstance(authentication, sasl.SASL):
                return (authentication,)
            return tuple(authentication)
        if login_method is not None:
            factory = _MECHANISMS.get(login_method)
            if factory is not None:
                if login_method in ('PLAIN', 'AMQPLAIN') and \
                        (userid is None or password is None):
                    raise ValueError('login_method %s needs userid and '
                                     'password' % login_method)
                return (factory(userid, password),)
            if login_response is not None:
                return (sasl.RAW(login_method, login_response),)
            raise ValueError('unknown login_method %r: use one of %s, or '
                             'give login_response' % (
                                 login_method, ', '.join(sorted(_MECHANISMS))))
        return (sasl.GSSAPI(userid, fail_soft=True), sasl.EXTERNAL(),
                sasl.AMQPLAIN(userid, password), sasl.PLAIN(userid, password))

    @classmethod
    def from_url(cls: Type[_H], url: str, **kwargs: Any) -> _H:
        """Build a Connection from ``amqp://`` or ``amqps://`` URL.

        ``amqps://user:pass@host:5671/vhost?heartbeat=30&connect_timeout=5``.
        The vhost is the URL path with one leading ``/`` removed and
        percent-decoding applied (``%2F`` is ``/``; an empty path means
        ``/``).  Query parameters become keyword arguments (numbers
        converted); explicit ``kwargs`` win.
        """
        opts = url_options(url)
        opts.update(kwargs)
        return cls(**opts)

    def _not_amqp(self) -> FrameError:
        """The error for a peer whose first bytes are no AMQP frame: say
        what it sent instead of what the frame parser thought of it."""
        data = self._reader.frames.unread()
        if data[:4] == spec.PROTOCOL_HEADER[:4] and len(data) >= 8:
            return FrameError(
                '%s does not speak AMQP 0-9-1: it answered with protocol '
                'header %r (0-9-1 is %r)' % (self.host, data[:8],
                                             spec.PROTOCOL_HEADER))
        preview = data[:60]
        return FrameError(
            '%s is not an AMQP 0-9-1 server: it sent %r%s' % (
                self.host, preview,
                '...' if len(data) > len(preview) else ''))

    def _on_start(self, version_major: int, version_minor: int,
                  server_properties: FieldTable,
                  mechanisms: Union[str, bytes], locales: str,
                  argsig: str = spec.args_of(spec.Connection.StartOk)
                  ) -> None:
        self.version_major = version_major
        self.version_minor = version_minor
        self.server_properties = server_properties
        if isinstance(mechanisms, str):
            mechanisms = mechanisms.encode('utf-8', 'surrogateescape')
        self.mechanisms = mechanisms.split(b' ')
        self.locales = locales.split(' ')
        logger.debug('Start from server, version: %d.%d, properties: %s, '
                     'mechanisms: %s, locales: %s', version_major,
                     version_minor, server_properties, self.mechanisms,
                     self.locales)
        client_properties = self.client_properties
        scap = self.server_capabilities
        cap = dict(cast('EncodableTable',
                        client_properties.get('capabilities') or {}))
        cap.update({name: enable for name, enable in
                    self.negotiate_capabilities.items() if scap.get(name)})
        if cap:
            client_properties['capabilities'] = cap
        else:
            client_properties.pop('capabilities', None)
        for auth in self.authentication:
            if auth.mechanism in self.mechanisms:
                response = auth.start(self)
                if response is not NotImplemented:
                    break
        else:
            raise ConnectionError(
                "Couldn't find appropriate auth mechanism (can offer: {}; "
                "available: {})".format(
                    ', '.join(m.mechanism.decode()
                              for m in self.authentication if m.mechanism),
                    ', '.join(m.decode('utf-8', 'replace')
                              for m in self.mechanisms)))
        self._auth = auth
        self.send_method(spec.Connection.StartOk, argsig,
                         (client_properties, auth.mechanism, response,
                          self.locale))

    def _on_secure(self, challenge: Union[str, bytes]) -> None:
        if isinstance(challenge, str):
            challenge = challenge.encode('utf-8', 'surrogateescape')
        response = self._auth.challenge(challenge)
        self.send_method(spec.Connection.SecureOk,
                         spec.args_of(spec.Connection.SecureOk), (response,))

    def _on_tune(self, channel_max: int, frame_max: int,
                 server_heartbeat: int,
                 argsig: str = spec.args_of(spec.Connection.TuneOk)
                 ) -> None:
        if frame_max and frame_max < spec.FRAME_MIN_SIZE:
            raise InvalidCommand(
                'server proposed frame_max=%d; AMQP 0-9-1 requires at '
                'least %d' % (frame_max, spec.FRAME_MIN_SIZE),
                spec.Connection.Tune)
        self.channel_max = _negotiate(self.channel_max, channel_max)
        self.channel_ids.limit = self.channel_max
        self.frame_max = _negotiate(self.frame_max, frame_max)
        self.server_heartbeat = server_heartbeat or 0
        client_heartbeat = self.client_heartbeat or 0
        # 0 on our side disables heartbeats; otherwise the lower non-zero.
        if not client_heartbeat:
            self.heartbeat = 0
        elif not self.server_heartbeat:
            self.heartbeat = int(client_heartbeat)
        else:
            self.heartbeat = min(self.server_heartbeat, int(client_heartbeat))
        self._reader.frames.max_payload = self.frame_max - \
            spec.FRAME_OVERHEAD
        self.send_method(spec.Connection.TuneOk, argsig,
                         (self.channel_max, self.frame_max, self.heartbeat))
        self.on_tune_ok()
        self.last_heartbeat_sent = self.last_heartbeat_received = monotonic()
        self.send_method(spec.Connection.Open,
                         spec.args_of(spec.Connection.Open),
                         (self.virtual_host, '', False))

    def _on_open_ok(self, known_hosts: str = '') -> None:
        self._handshake_complete = True
        self.on_open(self)

    @property
    def server_capabilities(self) -> FieldTable:
        """The capabilities table the server sent in connection.start."""
        return cast('FieldTable',
                    self.server_properties.get('capabilities') or {})


def _negotiate(ours: int, theirs: int) -> int:
    """The lower of two limits where 0 means 'no limit' (spec 1.4.2.6)."""
    if not ours:
        return theirs
    if not theirs:
        return ours
    return min(ours, theirs)


def _coerce(value: str) -> Union[int, float, bool, str]:
    for conv in (int, float):
        try:
            return conv(value)
        except ValueError:
            pass
    lowered = value.lower()
    if lowered in ('true', 'yes', 'on'):
        return True
    if lowered in ('false', 'no', 'off'):
        return False
    return value
