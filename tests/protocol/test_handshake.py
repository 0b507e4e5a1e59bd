"""Handshake, SASL and tuning against the scripted fake broker, asserting
on the bytes the client puts on the wire (AMQP 0-9-1 section 4.2.2)."""
import sys
import types

import pika.data
import pytest
from pika.spec import Connection

import amqp
from amqp.exceptions import AccessRefused, ConnectionError, ResourceError

from .fakebroker import start_frame


def test_handshake_bytes_and_capabilities(fake_broker):
    seen = {}

    def script(peer):
        seen['hs'] = peer.handshake(heartbeat=60)
        peer.serve_close()

    broker = fake_broker(script)
    conn = broker.connect(userid='alice', password='s3cret', heartbeat=10,
                          virtual_host='/v',
                          client_properties={'x-app': 'test'})
    assert conn.connected
    assert conn.server_properties['product'] == 'FakeBroker'
    assert conn.server_capabilities['publisher_confirms'] is True
    conn.close()
    broker.finish()
    assert broker.received.startswith(b'AMQP\x00\x00\x09\x01')
    start_ok, tune_ok, open_ = seen['hs'].start_ok, seen['hs'].tune_ok, \
        seen['hs'].open
    props = start_ok.client_properties
    caps = props['capabilities']
    for name in ('publisher_confirms', 'consumer_cancel_notify',
                 'connection.blocked', 'authentication_failure_close',
                 'basic.nack', 'exchange_exchange_bindings'):
        assert caps[name] is True, name
    assert props['x-app'] == 'test'
    assert props['product'] == 'amqp'
    # the default preference picks AMQPLAIN when offered (as py-amqp does)
    assert start_ok.mechanism == 'AMQPLAIN'
    response = start_ok.response
    table, _ = pika.data.decode_table(
        len(response).to_bytes(4, 'big') + response, 0)
    assert table == {'LOGIN': 'alice', 'PASSWORD': 's3cret'}
    assert start_ok.locale == 'en_US'
    assert (tune_ok.channel_max, tune_ok.frame_max, tune_ok.heartbeat) == \
        (2047, 131072, 10)
    assert open_.virtual_host == '/v'


@pytest.mark.parametrize('client, server, expected', [
    (10, 60, 10), (60, 10, 10), (0, 60, 0), (10, 0, 10), (0, 0, 0),
])
def test_heartbeat_negotiation(fake_broker, client, server, expected):
    seen = {}

    def script(peer):
        seen['hs'] = peer.handshake(heartbeat=server)
        peer.serve_close()

    broker = fake_broker(script)
    conn = broker.connect(heartbeat=client)
    assert conn.heartbeat == expected
    assert conn.server_heartbeat == server
    conn.close()
    broker.finish()
    assert seen['hs'].tune_ok.heartbeat == expected


@pytest.mark.parametrize('client, server, expected', [
    (None, 2047, 2047), (100, 2047, 100), (5000, 2047, 2047),
    (100, 0, 100),
])
def test_channel_max_negotiation(fake_broker, client, server, expected):
    seen = {}

    def script(peer):
        seen['hs'] = peer.handshake(channel_max=server, frame_max=8192)
        peer.serve_close()

    broker = fake_broker(script)
    conn = broker.connect(channel_max=client, frame_max=65536)
    assert conn.channel_max == expected
    assert conn.frame_max == 8192
    conn.close()
    broker.finish()
    tune_ok = seen['hs'].tune_ok
    assert (tune_ok.channel_max, tune_ok.frame_max) == (expected, 8192)


def test_channel_ids_exhausted_raise_resource_error(fake_broker):
    def script(peer):
        peer.handshake(channel_max=2)
        for n in (1, 2):
            peer.serve_channel_open(n)
        peer.serve_close()

    broker = fake_broker(script)
    conn = broker.connect()
    conn.channel()
    conn.channel()
    with pytest.raises(ResourceError):
        conn.channel()
    conn.close()


@pytest.mark.parametrize('kwargs, mechanism, response', [
    ({'login_method': 'PLAIN'}, b'PLAIN', b'\0u\0p'),
    ({'login_method': 'AMQPLAIN'}, b'AMQPLAIN',
     b'\x05LOGINS\x00\x00\x00\x01u\x08PASSWORDS\x00\x00\x00\x01p'),
    ({'login_method': 'EXTERNAL'}, b'EXTERNAL', b''),
    ({'login_method': 'X-TOKEN', 'login_response': b'tok'}, b'X-TOKEN',
     b'tok'),
    ({'authentication': (amqp.sasl.RAW('X-TOKEN', b'tok2'),)}, b'X-TOKEN',
     b'tok2'),
])
def test_sasl_mechanisms_on_the_wire(fake_broker, kwargs, mechanism,
                                     response):
    seen = {}

    def script(peer):
        seen['hs'] = peer.handshake(
            mechanisms=b'PLAIN AMQPLAIN EXTERNAL X-TOKEN')
        peer.serve_close()

    broker = fake_broker(script)
    conn = broker.connect(userid='u', password='p', **kwargs)
    conn.close()
    broker.finish()
    assert seen['hs'].start_ok.mechanism == mechanism.decode()
    assert seen['hs'].start_ok.response == response


def test_no_matching_mechanism_is_a_clear_error(fake_broker):
    def script(peer):
        peer.start(mechanisms=b'SCRAM-SHA-256 X-OTHER')
        peer.wait_closed()

    broker = fake_broker(script)
    with pytest.raises(ConnectionError) as info:
        broker.connect(userid='u', password='hunter2')
    text = str(info.value)
    assert 'SCRAM-SHA-256' in text and 'PLAIN' in text
    assert 'hunter2' not in text


def test_secure_challenge_answered_by_mechanism(fake_broker):
    class Challenged(amqp.sasl.SASL):
        mechanism = b'X-CHALLENGE'

        def start(self, connection):
            return b'hello'

        def challenge(self, data):
            return b'answer:' + data

    seen = {}

    def script(peer):
        seen['start_ok'] = peer.start(mechanisms=b'X-CHALLENGE')
        for n in (1, 2):
            peer.send_method(Connection.Secure(b'c%d' % n))
            seen[n] = peer.expect_method(Connection.SecureOk)
        peer.tune_and_open()
        peer.serve_close()

    broker = fake_broker(script)
    conn = broker.connect(authentication=[Challenged()])
    conn.close()
    broker.finish()
    assert seen['start_ok'].response == b'hello'
    assert seen[1].response == b'answer:c1'
    assert seen[2].response == b'answer:c2'


def test_unexpected_secure_challenge_refused(fake_broker):
    def script(peer):
        peer.start(mechanisms=b'PLAIN')
        peer.send_method(Connection.Secure(b'??'))
        peer.wait_closed()

    broker = fake_broker(script)
    with pytest.raises(AccessRefused):
        broker.connect()


def _fake_gssapi(log):
    """A tiny stand-in for the optional ``gssapi`` package (an external
    library boundary: Kerberos is not available in tests)."""
    mod = types.ModuleType('gssapi')

    class GSSError(Exception):
        pass

    class NameType:
        user = 'user'
        hostbased_service = 'hostbased_service'

    class Name:
        def __init__(self, value, name_type):
            log.append(('name', value, name_type))

    class Credentials:
        def __init__(self, name=None, usage=None):
            log.append(('creds', usage))

    class SecurityContext:
        def __init__(self, name=None, creds=None, usage=None):
            log.append(('context', usage))
            self.steps = 0

        def step(self, token):
            log.append(('step', token))
            self.steps += 1
            return b'token%d' % self.steps

    mod.GSSError = GSSError
    mod.exceptions = types.SimpleNamespace(GSSError=GSSError)
    mod.NameType = NameType
    mod.Name = Name
    mod.Credentials = Credentials
    mod.SecurityContext = SecurityContext
    return mod


def test_gssapi_exchange(fake_broker, monkeypatch):
    log = []
    monkeypatch.setitem(sys.modules, 'gssapi', _fake_gssapi(log))
    seen = {}

    def script(peer):
        seen['start_ok'] = peer.start(mechanisms=b'GSSAPI PLAIN')
        peer.send_method(Connection.Secure(b'srv1'))
        seen['secure_ok'] = peer.expect_method(Connection.SecureOk)
        peer.tune_and_open()
        peer.serve_close()

    broker = fake_broker(script)
    conn = broker.connect(login_method='GSSAPI', userid='alice')
    conn.close()
    broker.finish()
    assert seen['start_ok'].mechanism == 'GSSAPI'
    assert seen['start_ok'].response == b'token1'
    assert seen['secure_ok'].response == b'token2'
    assert ('name', 'amqp@127.0.0.1', 'hostbased_service') in log
    assert ('step', None) in log and ('step', b'srv1') in log


def test_gssapi_missing_falls_back_to_next_mechanism(fake_broker,
                                                     monkeypatch):
    monkeypatch.setitem(sys.modules, 'gssapi', None)  # import fails
    seen = {}

    def script(peer):
        seen['hs'] = peer.handshake(mechanisms=b'GSSAPI PLAIN')
        peer.serve_close()

    broker = fake_broker(script)
    conn = broker.connect(userid='u', password='p')
    conn.close()
    broker.finish()
    assert seen['hs'].start_ok.mechanism == 'PLAIN'


def test_auth_failure_text_has_no_password(fake_broker):
    def script(peer):
        peer.start(mechanisms=b'PLAIN')
        peer.send_method(Connection.Close(
            403, 'ACCESS_REFUSED - Login was refused using authentication '
                 'mechanism PLAIN', 0, 0))
        peer.wait_closed(timeout=2)

    broker = fake_broker(script)
    with pytest.raises(AccessRefused) as info:
        broker.connect(userid='u', password='hunter2', login_method='PLAIN')
    assert info.value.reply_code == 403
    assert 'hunter2' not in str(info.value)
    assert 'hunter2' not in repr(info.value)


def test_gssapi_requested_without_the_package(fake_broker, monkeypatch):
    monkeypatch.setitem(sys.modules, 'gssapi', None)  # import fails

    def script(peer):
        peer.expect_header()
        peer.send(start_frame(mechanisms=b'GSSAPI PLAIN'))
        peer.wait_closed()

    broker = fake_broker(script)
    with pytest.raises(ConnectionError, match=r'amqp\[gssapi\]'):
        broker.connect(login_method='GSSAPI')
