"""Helpers shared by every test suite, each written once.

``tests/conftest.py`` lives in this directory, so pytest puts it on
``sys.path`` and any test module can ``from testkit import ...``.

Wire helpers build and read AMQP 0-9-1 frames with pika's codec (a test
dependency) and the frame envelope of spec section 4.2.3, never with
``amqp.serialization`` or ``amqp.spec``: a bug our encoder and decoder
share would otherwise cancel out in every test that uses them.
"""
import datetime
import decimal
import ipaddress
import os
import socket
import struct
import time
import uuid

import pika.frame
import pika.spec
from hypothesis import strategies as st
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# -- frames -----------------------------------------------------------------

PROTOCOL_HEADER = b'AMQP\x00\x00\x09\x01'
FRAME_END = 0xCE
HEARTBEAT = b'\x08\x00\x00\x00\x00\x00\x00\xce'
_ENVELOPE = struct.Struct('>BHI')      # type, channel, payload size


def frame(frame_type, channel, payload):
    """One frame around ``payload``, for frames pika will not build
    (unknown types, truncated or malformed payloads)."""
    return _ENVELOPE.pack(frame_type, channel, len(payload)) + \
        payload + bytes((FRAME_END,))


def method_payload(method):
    """The payload of a method frame: ``method`` is a ``pika.spec``
    method instance, e.g. ``pika.spec.Basic.Ack(7)``."""
    return struct.pack('>I', method.INDEX) + b''.join(method.encode())


def pika_method_class(name):
    """pika's class for an AMQP method name: ``basic.get-ok`` is
    ``pika.spec.Basic.GetOk`` (found by name, so ids can be compared)."""
    class_name, method_name = name.split('.')
    return getattr(getattr(pika.spec, class_name.capitalize()),
                   ''.join(w.capitalize() for w in method_name.split('-')))


def method_frame(method, channel=0):
    return pika.frame.Method(channel, method).marshal()


def basic_properties(properties):
    """``pika.spec.BasicProperties`` from a dict keyed by our (py-amqp's)
    property names."""
    properties = dict(properties or {})
    if 'application_headers' in properties:
        properties['headers'] = properties.pop('application_headers')
    return pika.spec.BasicProperties(**properties)


def properties_dict(properties):
    """The set properties of a ``pika.spec.BasicProperties`` keyed by our
    property names."""
    names = [name for name in vars(properties) if not name.startswith('_')]
    return {('application_headers' if name == 'headers' else name):
            getattr(properties, name)
            for name in names if getattr(properties, name) is not None}


def content_frames(channel, body, properties=None, frame_max=131072):
    """A content header frame and the body frames for ``body``, cut at
    ``frame_max`` (spec 4.2.6)."""
    header = pika.frame.Header(channel, len(body),
                               basic_properties(properties)).marshal()
    step = frame_max - 8
    return header + b''.join(pika.frame.Body(channel, body[i:i + step])
                             .marshal() for i in range(0, len(body), step))


def message_frames(method, body, channel=1, properties=None,
                   frame_max=131072):
    """A content-carrying method (deliver, get-ok, return, publish) with
    its header and body frames."""
    return method_frame(method, channel) + content_frames(
        channel, body, properties, frame_max)


def split_frames(data):
    """Cut a complete byte stream into ``(type, channel, payload)``."""
    frames = []
    pos = 0
    while pos < len(data):
        frame_type, channel, size = _ENVELOPE.unpack_from(data, pos)
        end = pos + _ENVELOPE.size + size
        assert data[end] == FRAME_END, 'bad frame end at %d' % end
        frames.append((frame_type, channel, bytes(data[pos + 7:end])))
        pos = end + 1
    assert pos == len(data)
    return frames


def decode_frame(data):
    """Decode one whole frame with pika: a ``pika.frame`` Method, Header,
    Body or Heartbeat.  (pika gives longstr method arguments as bytes,
    shortstr ones as str.)"""
    data = bytes(data)
    if data[:1] == b'\x01':
        # pika.frame.decode_frame calls the method class with no arguments,
        # which Connection.UpdateSecret (pika 1.4) refuses; and its decode
        # stores new_secret as "mechanisms".
        _, channel, size = _ENVELOPE.unpack_from(data)
        assert len(data) == 8 + size and data[-1] == FRAME_END, data
        cls = pika.spec.methods[struct.unpack_from('>I', data, 7)[0]]
        method = cls.__new__(cls)
        method.decode(data[7:-1], 4)
        if cls is pika.spec.Connection.UpdateSecret:
            method.new_secret = vars(method).pop('mechanisms')
        return pika.frame.Method(channel, method)
    used, decoded = pika.frame.decode_frame(data)
    assert used == len(data), (used, len(data))
    return decoded


def decode_frames(data):
    """Every frame in a complete byte stream, decoded by pika."""
    return [decode_frame(frame(*f)) for f in split_frames(data)]


def naive_utc(value):
    """``value`` with pika's aware UTC datetimes made naive UTC, as ours
    (and py-amqp's) are, at any depth of tables and arrays."""
    if isinstance(value, dict):
        return {k: naive_utc(v) for k, v in value.items()}
    if isinstance(value, list):
        return [naive_utc(v) for v in value]
    if isinstance(value, datetime.datetime) and value.tzinfo is not None:
        return value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return value


# Every basic content property set (spec 4.2.6.1: 14 flags in order).
ALL_PROPERTIES = {
    'content_type': 'application/json',
    'content_encoding': 'utf-8',
    'application_headers': {'x-retries': 2, 'trace': 'abc'},
    'delivery_mode': 2,
    'priority': 9,
    'correlation_id': 'c-1',
    'reply_to': 'amq.rabbitmq.reply-to',
    'expiration': '60000',
    'message_id': 'm-1',
    'timestamp': 1700000000,
    'type': 'task',
    'user_id': 'guest',
    'app_id': 'celery',
    'cluster_id': 'c',
}


# A field table with a value of every type pika writes (S x t I l D T V F
# A), nested; shaped like what RabbitMQ puts in x-death headers too.
CROSS_TABLE = {
    'int': 1,
    'negative': -2 ** 31,
    'big': 2 ** 40,
    'huge_negative': -2 ** 63,
    'text': 'caf\xe9',
    'empty': '',
    'raw': b'\x00\xff',
    'yes': True,
    'no': False,
    'nothing': None,
    'price': decimal.Decimal('12.34'),
    'integral_decimal': decimal.Decimal('-7'),
    'when': datetime.datetime(2023, 11, 14, 22, 13, 20),
    'nested': {'a': {'b': [1, 'two', {'c': None}]}},
    'list': [1, True, 'x', [], {}],
    'empty_table': {},
    'x-death': [{
        'count': 2 ** 33, 'reason': 'rejected', 'queue': 'tasks',
        'time': datetime.datetime(2023, 11, 14, 22, 13, 20),
        'exchange': '', 'routing-keys': ['tasks', 'cc'],
    }],
}


# -- names and waiting ------------------------------------------------------

def unique_name(prefix):
    """A queue, exchange or vhost name no other test (or run) uses."""
    return '%s-%s' % (prefix, uuid.uuid4().hex[:10])


def wait_until(predicate, timeout=5.0, interval=0.02, what=None):
    """Poll ``predicate`` until it returns something true; return that.
    Fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        assert time.monotonic() < deadline, \
            '%s not met within %ss' % (what or 'condition', timeout)
        time.sleep(interval)


def drain_until(conn, predicate, timeout=5.0, what=None):
    """Serve ``conn``'s events (an ``amqp`` or kombu connection) until
    ``predicate()`` is true.  Fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        remaining = deadline - time.monotonic()
        assert remaining > 0, \
            '%s not met within %ss' % (what or 'condition', timeout)
        try:
            conn.drain_events(timeout=remaining)
        except socket.timeout:
            pass


def assert_writes_refused(conn, channel, broken):
    """After a write that broke ``conn``'s stream: it is not connected,
    ``transport.broken`` says ``broken``, and the next publish raises
    RecoverableConnectionError at once instead of writing."""
    from amqp import Message
    from amqp.exceptions import RecoverableConnectionError

    assert not conn.connected
    assert broken in conn.transport.broken
    started = time.monotonic()
    try:
        channel.basic_publish(Message(b'after'), routing_key='q')
    except RecoverableConnectionError:
        pass
    else:
        raise AssertionError('a publish after the break was written')
    assert time.monotonic() - started < 0.5


def drain_for(conn, seconds):
    """Serve ``conn``'s events for ``seconds`` whatever arrives; errors
    other than timeouts propagate."""
    deadline = time.monotonic() + seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        try:
            conn.drain_events(timeout=min(remaining, 0.2))
        except socket.timeout:
            pass


def get_eventually(ch, queue, timeout=5.0, **kwargs):
    """``basic_get`` until a message is there (publishes reach a queue
    asynchronously); fails the test after ``timeout`` seconds."""
    return wait_until(lambda: ch.basic_get(queue, **kwargs), timeout,
                      what='a message on %s' % queue)


def exclusive_queue(ch, **kwargs):
    """A server-named queue that goes with the connection.  Not
    auto-delete: cancelling its last consumer must not delete it."""
    return ch.queue_declare('', exclusive=True, auto_delete=False,
                            **kwargs).queue


# -- TLS certificates ------------------------------------------------------

CLIENT_CN = 'tls-client'


def _x509_name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, key, issuer, issuer_key, ca=False, sans=(), eku=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_x509_name(subject))
               .issuer_name(_x509_name(issuer))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                              critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True,
            content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
            critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer_key.public_key()), critical=False)
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(list(sans)), critical=False)
    if eku:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([eku]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(directory, name, cert=None, key=None):
    path = os.path.join(directory, name)
    with open(path, 'wb') as f:
        if cert is not None:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            f.write(key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
    return path


def make_certificates(directory):
    """CA, server (localhost/127.0.0.1), client (CN=tls-client) and an
    unrelated CA; returns a dict of PEM file paths."""
    new_key = lambda: ec.generate_private_key(ec.SECP256R1())  # noqa: E731
    ca_key, other_key = new_key(), new_key()
    ca = _cert('amqp test CA', ca_key, 'amqp test CA', ca_key, ca=True)
    other = _cert('untrusted CA', other_key, 'untrusted CA', other_key,
                  ca=True)
    server_key, client_key = new_key(), new_key()
    server = _cert('localhost', server_key, 'amqp test CA', ca_key, sans=(
        x509.DNSName('localhost'),
        x509.IPAddress(ipaddress.ip_address('127.0.0.1'))),
        eku=ExtendedKeyUsageOID.SERVER_AUTH)
    client = _cert(CLIENT_CN, client_key, 'amqp test CA', ca_key,
                   eku=ExtendedKeyUsageOID.CLIENT_AUTH)
    return {
        'ca': _write(directory, 'ca.pem', ca),
        'other_ca': _write(directory, 'other_ca.pem', other),
        'server_cert': _write(directory, 'server.pem', server),
        'server_key': _write(directory, 'server.key', key=server_key),
        'client_cert': _write(directory, 'client.pem', client),
        'client_key': _write(directory, 'client.key', key=client_key),
    }


# -- scripts written against method signatures ------------------------------
# The py-amqp comparison tests script the broker by method signature and
# positional arguments (what both libraries' spec tables share); these
# helpers encode and decode such methods with pika all the same.

def sig_method(sig, args=()):
    """The ``pika.spec`` method for our signature ``sig`` (class id,
    method id), built from positional arguments in spec order."""
    cls = pika.spec.methods[(sig[0] << 16) | sig[1]]
    return cls(*args)


def sig_method_frame(sig, args=(), channel=0):
    """A method frame for ``sig`` with positional arguments, by pika."""
    return method_frame(sig_method(sig, args), channel)


def method_args(method):
    """A pika method's arguments in spec order, text as UTF-8 bytes (the
    bytes the client put on the wire)."""
    return [v.encode('utf-8', 'surrogateescape') if isinstance(v, str)
            else v for v in vars(method).values()]


def method_sig(method):
    """Our ``(class id, method id)`` for a pika method."""
    return method.INDEX >> 16, method.INDEX & 0xFFFF


class SigPeer:
    """A fake-broker peer scripted by method signature: wraps the pika
    based ``Peer`` so ``expect_method(sig)`` returns the arguments as a
    list and frames read are ``(type, channel, payload)`` tuples."""

    def __init__(self, peer):
        self.peer = peer
        self.frames = []

    def __getattr__(self, name):
        return getattr(self.peer, name)

    def recv_frame(self, skip_heartbeats=True):
        while True:
            envelope = self.peer.recv_exactly(_ENVELOPE.size)
            frame_type, channel, size = _ENVELOPE.unpack(envelope)
            payload = self.peer.recv_exactly(size)
            assert self.peer.recv_exactly(1) == bytes((FRAME_END,))
            self.frames.append((frame_type, channel, payload))
            if frame_type == 8 and skip_heartbeats:
                continue
            return frame_type, channel, payload

    def recv_method(self):
        """``(sig, args)`` of the next method frame (pika decodes it)."""
        frame_type, channel, payload = self.recv_frame()
        assert frame_type == 1, (frame_type, payload)
        method = decode_frame(frame(1, channel, payload)).method
        return method_sig(method), method_args(method)

    def expect_method(self, sig):
        got, args = self.recv_method()
        assert got == tuple(sig), (got, sig)
        return args


# ---------------------------------------------------------------------------
# Hypothesis strategies: field tables and basic properties as the encoders
# take them (and the decoders give them back).

_keys = st.text(max_size=12)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-2 ** 63, max_value=2 ** 63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    # a byte array ('x') comes back as bytes; plain bytes go out as a
    # longstr (py-amqp's choice) and come back as text when UTF-8
    st.binary(max_size=20).map(bytearray),
    st.builds(lambda unscaled, scale: decimal.Decimal(unscaled).scaleb(-scale),
              st.integers(min_value=-2 ** 31, max_value=2 ** 31 - 1),
              st.integers(min_value=0, max_value=20)),
    st.datetimes(min_value=datetime.datetime(1970, 1, 1),
                 max_value=datetime.datetime(9999, 12, 31)).map(
                     lambda d: d.replace(microsecond=0)),
)
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(_keys, children, max_size=4)),
    max_leaves=20)
tables_strategy = st.dictionaries(_keys, _values, max_size=6)


_shortstr = st.text(max_size=40)
properties_strategy = st.fixed_dictionaries({}, optional={
    'content_type': _shortstr,
    'content_encoding': _shortstr,
    'application_headers': tables_strategy,
    'delivery_mode': st.integers(0, 255),
    'priority': st.integers(0, 255),
    'correlation_id': _shortstr,
    'reply_to': _shortstr,
    'expiration': _shortstr,
    'message_id': _shortstr,
    'timestamp': st.integers(0, 2 ** 64 - 1),
    'type': _shortstr,
    'user_id': _shortstr,
    'app_id': _shortstr,
    'cluster_id': _shortstr,
})
