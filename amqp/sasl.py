"""SASL mechanisms for connection.start-ok (AMQP 0-9-1 section 1.4.2.2).

Each mechanism has a ``mechanism`` name (bytes) and ``start(connection)``
returning the initial response (bytes, or ``NotImplemented`` when it cannot
be used, e.g. a missing optional library).  Challenges
(connection.secure) go to ``challenge(data)`` when a mechanism supports
them.  Secrets are never part of a mechanism's repr.

``start`` gets the connection; what it may use of it is
:class:`SASLConnection`.
"""
from __future__ import annotations

import socket
import sys
from typing import TYPE_CHECKING, Optional, Protocol, Union

from .serialization import encode_table

if TYPE_CHECKING:
    if sys.version_info >= (3, 10):
        from types import NotImplementedType
    else:
        from builtins import _NotImplementedType as NotImplementedType
    #: What ``start`` returns: the initial response (None: empty), or
    #: NotImplemented when the mechanism cannot be used here.  (typeshed
    #: derives NotImplemented's type from Any, so mypy calls returning it
    #: "returning Any": hence the ignore[no-any-return] on those lines.)
    _Response = Union[bytes, None, NotImplementedType]

__all__ = ('SASL', 'PLAIN', 'AMQPLAIN', 'EXTERNAL', 'RAW', 'GSSAPI',
           'SASLConnection', 'SASLTransport')

#: A user name, password or token, as text or bytes.
_Text = Union[str, bytes]


class SASLTransport(Protocol):
    """What a mechanism may read of the connection's transport."""

    @property
    def sock(self) -> Optional[socket.socket]:
        """The connected socket."""

    @property
    def host(self) -> str:
        """The host name the connection was asked for."""


class SASLConnection(Protocol):
    """What a mechanism may use of the connection it authenticates."""

    @property
    def transport(self) -> Optional[SASLTransport]:
        """The transport (set while the handshake runs)."""


class _SecurityContext(Protocol):
    """The part of ``gssapi.SecurityContext`` GSSAPI uses."""

    def step(self, token: Optional[bytes]) -> Optional[bytes]:
        """Process a token from the server; return the next one."""


class SASL:
    """Base class for a SASL mechanism."""

    mechanism: Optional[bytes] = None

    def start(self, connection: SASLConnection) -> _Response:
        """Return the initial response, or NotImplemented."""
        raise NotImplementedError

    def challenge(self, data: bytes) -> bytes:
        """Answer a connection.secure challenge (default: none expected)."""
        from .exceptions import AccessRefused
        raise AccessRefused('SASL mechanism %s received an unexpected '
                            'challenge' % (self.mechanism or b'').decode())

    def __repr__(self) -> str:
        return '<%s>' % type(self).__name__


class _UserPassword(SASL):
    """A mechanism that sends a user name and password: nothing to offer
    without both; the password never appears in a repr or an error."""

    def __init__(self, username: Optional[_Text],
                 password: Optional[_Text]) -> None:
        self.username, self.password = username, password

    def start(self, connection: SASLConnection) -> _Response:
        if self.username is None or self.password is None:
            return NotImplemented  # type: ignore[no-any-return]
        return self._response(self.username,
                              _secret(self.password, 'password'))

    def _response(self, username: _Text, password: bytes) -> bytes:
        raise NotImplementedError

    def __repr__(self) -> str:
        return '<%s username=%r>' % (type(self).__name__, self.username)


class PLAIN(_UserPassword):
    """PLAIN: ``\\0username\\0password`` (RFC 4616)."""

    mechanism = b'PLAIN'

    def _response(self, username: _Text, password: bytes) -> bytes:
        return b'\0' + _b(username) + b'\0' + password


class AMQPLAIN(_UserPassword):
    """AMQPLAIN: a field table of LOGIN and PASSWORD (RabbitMQ)."""

    mechanism = b'AMQPLAIN'

    def _response(self, username: _Text, password: bytes) -> bytes:
        # The response is the table *without* its 4-byte length prefix;
        # the password goes as given (checked to be encodable by start()).
        return encode_table({'LOGIN': username,
                             'PASSWORD': self.password})[4:]


class EXTERNAL(SASL):
    """EXTERNAL: identity from the TLS client certificate."""

    mechanism = b'EXTERNAL'

    def start(self, connection: SASLConnection) -> _Response:
        return b''


class RAW(SASL):
    """A caller-supplied mechanism name and response (py-amqp's RAW)."""

    def __init__(self, mechanism: _Text, response: Optional[_Text]) -> None:
        if isinstance(mechanism, str):
            mechanism = mechanism.encode('ascii')
        self.mechanism = mechanism
        self.response = _b(response) if response is not None else None

    def start(self, connection: SASLConnection) -> _Response:
        return self.response

    def __repr__(self) -> str:
        return '<RAW mechanism=%r>' % (self.mechanism,)


class GSSAPI(SASL):
    """GSSAPI (Kerberos) through the optional ``gssapi`` package.

    ``start`` returns NotImplemented when ``gssapi`` is not installed, so
    the next mechanism is tried.  Install ``amqp[gssapi]`` to use it.
    """

    mechanism = b'GSSAPI'

    def __init__(self, client_name: Optional[_Text] = None,
                 service: _Text = b'amqp', rdns: bool = False,
                 fail_soft: bool = False) -> None:
        self.client_name = client_name
        self.service = service
        self.rdns = rdns
        self.fail_soft = fail_soft
        self.context: Optional[_SecurityContext] = None

    def _target_host(self, connection: SASLConnection) -> str:
        transport = connection.transport
        if transport is None:
            from .exceptions import RecoverableConnectionError
            raise RecoverableConnectionError('GSSAPI: connection is closed')
        sock = transport.sock
        if self.rdns and sock is not None and \
                sock.family in (socket.AF_INET, socket.AF_INET6):
            peer: str = sock.getpeername()[0]
            return socket.gethostbyaddr(peer)[0]
        return transport.host

    def start(self, connection: SASLConnection) -> _Response:
        try:
            import gssapi
        except ImportError:
            if self.fail_soft:
                return NotImplemented  # type: ignore[no-any-return]
            from .exceptions import ConnectionError
            raise ConnectionError('GSSAPI authentication needs the gssapi '
                                  'package: pip install amqp[gssapi]')
        try:
            creds = None
            if self.client_name:
                name = gssapi.Name(_b(self.client_name),
                                   gssapi.NameType.user)
                creds = gssapi.Credentials(name=name, usage='initiate')
            host = self._target_host(connection)
            service = self.service.decode() if isinstance(
                self.service, bytes) else self.service
            target = gssapi.Name('%s@%s' % (service, host),
                                 gssapi.NameType.hostbased_service)
            self.context = gssapi.SecurityContext(
                name=target, creds=creds, usage='initiate')
            return self.context.step(None) or b''
        except gssapi.exceptions.GSSError:
            if self.fail_soft:
                return NotImplemented  # type: ignore[no-any-return]
            raise

    def challenge(self, data: bytes) -> bytes:
        if self.context is None:
            return super().challenge(data)
        return self.context.step(_b(data)) or b''


def _secret(value: object, what: str) -> bytes:
    """The UTF-8 bytes of a secret; an error about it never quotes it."""
    if isinstance(value, str):
        try:
            return value.encode('utf-8')
        except UnicodeEncodeError as exc:
            raise ValueError('the %s cannot be encoded as UTF-8 (character '
                             '%d of %d is a lone surrogate or invalid)'
                             % (what, exc.start + 1, len(value))) from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError('the %s must be str or bytes, not %s'
                    % (what, type(value).__name__))


def _b(value: Union[str, bytes, bytearray, memoryview]) -> bytes:
    if isinstance(value, str):
        return value.encode('utf-8')
    return bytes(value)
