"""SASL mechanisms for connection.start-ok (AMQP 0-9-1 section 1.4.2.2).

Each mechanism has a ``mechanism`` name (bytes) and ``start(connection)``
returning the initial response (bytes, or ``NotImplemented`` when it cannot
be used, e.g. a missing optional library).  Challenges
(connection.secure) go to ``challenge(data)`` when a mechanism supports
them.  Secrets are never part of a mechanism's repr.
"""
import socket

from .serialization import encode_table

__all__ = ('SASL', 'PLAIN', 'AMQPLAIN', 'EXTERNAL', 'RAW', 'GSSAPI')


class SASL:
    """Base class for a SASL mechanism."""

    mechanism = None

    def start(self, connection):
        """Return the initial response, or NotImplemented."""
        raise NotImplementedError

    def challenge(self, data):
        """Answer a connection.secure challenge (default: none expected)."""
        from .exceptions import AccessRefused
        raise AccessRefused('SASL mechanism %s received an unexpected '
                            'challenge' % self.mechanism.decode())

    def __repr__(self):
        return '<%s>' % type(self).__name__


class PLAIN(SASL):
    """PLAIN: ``\\0username\\0password`` (RFC 4616)."""

    mechanism = b'PLAIN'

    def __init__(self, username, password):
        self.username, self.password = username, password

    def start(self, connection):
        if self.username is None or self.password is None:
            return NotImplemented
        return b'\0' + _b(self.username) + b'\0' + \
            _secret(self.password, 'password')

    def __repr__(self):
        return '<PLAIN username=%r>' % (self.username,)


class AMQPLAIN(SASL):
    """AMQPLAIN: a field table of LOGIN and PASSWORD (RabbitMQ)."""

    mechanism = b'AMQPLAIN'

    def __init__(self, username, password):
        self.username, self.password = username, password

    def start(self, connection):
        if self.username is None or self.password is None:
            return NotImplemented
        _secret(self.password, 'password')  # refused without quoting it
        # The response is the table *without* its 4-byte length prefix.
        return encode_table({'LOGIN': self.username,
                             'PASSWORD': self.password})[4:]

    def __repr__(self):
        return '<AMQPLAIN username=%r>' % (self.username,)


class EXTERNAL(SASL):
    """EXTERNAL: identity from the TLS client certificate."""

    mechanism = b'EXTERNAL'

    def start(self, connection):
        return b''


class RAW(SASL):
    """A caller-supplied mechanism name and response (py-amqp's RAW)."""

    def __init__(self, mechanism, response):
        if isinstance(mechanism, str):
            mechanism = mechanism.encode('ascii')
        self.mechanism = mechanism
        self.response = _b(response) if response is not None else None

    def start(self, connection):
        return self.response

    def __repr__(self):
        return '<RAW mechanism=%r>' % (self.mechanism,)


class GSSAPI(SASL):
    """GSSAPI (Kerberos) through the optional ``gssapi`` package.

    ``start`` returns NotImplemented when ``gssapi`` is not installed, so
    the next mechanism is tried.  Install ``amqp[gssapi]`` to use it.
    """

    mechanism = b'GSSAPI'

    def __init__(self, client_name=None, service=b'amqp',
                 rdns=False, fail_soft=False):
        self.client_name = client_name
        self.service = service
        self.rdns = rdns
        self.fail_soft = fail_soft
        self.context = None

    def _target_host(self, connection):
        sock = connection.transport.sock
        if self.rdns and sock is not None and \
                sock.family in (socket.AF_INET, socket.AF_INET6):
            peer = sock.getpeername()[0]
            return socket.gethostbyaddr(peer)[0]
        return connection.transport.host

    def start(self, connection):
        try:
            import gssapi
        except ImportError:
            if self.fail_soft:
                return NotImplemented
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
                return NotImplemented
            raise

    def challenge(self, data):
        if self.context is None:
            return super().challenge(data)
        return self.context.step(_b(data)) or b''


def _secret(value, what):
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


def _b(value):
    if isinstance(value, str):
        return value.encode('utf-8')
    return bytes(value)
