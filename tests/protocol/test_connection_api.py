"""py-amqp 5.x constructor and attribute compatibility, host forms and
address fallback, from_url."""
import socket
import ssl

import pytest

import amqp
from amqp import Connection
from amqp.exceptions import ConnectionError, ResourceError
from amqp.transport import SSLTransport, TCPTransport, to_host_port

from .fakebroker import TIMEOUT, FakeBroker, handshake_then_close


def test_py_amqp_constructor_keywords_and_unknown_kwargs():
    conn = Connection(
        host='localhost:5672', userid='guest', password='guest',
        login_method=None, login_response=None, authentication=(),
        virtual_host='/', locale='en_US', client_properties=None, ssl=False,
        connect_timeout=None, channel_max=None, frame_max=None, heartbeat=0,
        on_open=None, on_blocked=None, on_unblocked=None,
        confirm_publish=False, on_tune_ok=None, read_timeout=None,
        write_timeout=None, socket_settings=None,
        frame_handler=amqp.method_framing.frame_handler,
        frame_writer=amqp.method_framing.frame_writer,
        transport_options={'x': 1}, kombu_thing=object())
    assert not conn.connected
    assert not conn.is_alive()
    assert not conn.connected   # (reading .sock would connect)
    for name in ('channels', 'server_properties', 'server_capabilities',
                 'negotiate_capabilities', 'library_properties',
                 'client_heartbeat', 'server_heartbeat', 'heartbeat',
                 'last_heartbeat_sent', 'last_heartbeat_received',
                 'prev_sent', 'prev_recv', 'bytes_sent', 'bytes_recv',
                 'on_inbound_frame', 'on_inbound_method', 'blocking_read',
                 'heartbeat_tick', 'send_heartbeat', 'collect', 'then',
                 'drain_events', 'channel', 'connect', 'close',
                 'update_secret'):
        # on the class: reading some of them connects (as in py-amqp)
        assert hasattr(Connection, name) or name in vars(conn), name
    for name in ('connection_errors', 'channel_errors',
                 'recoverable_connection_errors',
                 'recoverable_channel_errors'):
        assert isinstance(getattr(Connection, name), tuple), name
    assert OSError in Connection.connection_errors
    assert ConnectionError in Connection.connection_errors
    conn.close()   # never connected: harmless


def test_bad_arguments_raise_before_connecting():
    with pytest.raises(ValueError):
        Connection(channel_max=70000)
    with pytest.raises(ValueError):
        Connection(frame_max=100)
    with pytest.raises(ValueError):
        Connection(heartbeat=-1)
    with pytest.raises(ValueError):
        Connection(login_method='NOPE')
    with pytest.raises(ValueError):
        Connection('localhost:notaport').connect()


def test_channel_subclass_and_callbacks(fake_broker):
    script = handshake_then_close(lambda peer: peer.serve_channel_open(1))

    class MyChannel(amqp.Channel):
        pass

    class MyConnection(Connection):
        Channel = MyChannel

    opened, tuned, channel_opened = [], [], []
    broker = fake_broker(script)
    conn = MyConnection(broker.host, connect_timeout=TIMEOUT,
                        on_open=opened.append,
                        on_tune_ok=lambda: tuned.append(1))
    conn.connect(callback=lambda: opened.append('callback'))
    assert opened == [conn, 'callback'] and tuned == [1]
    ch = conn.channel(callback=channel_opened.append)
    assert isinstance(ch, MyChannel)
    assert ch.channel_id == 1 and conn.channels[1] is ch
    assert conn.channel(1) is ch
    assert channel_opened == [ch]
    conn.close()


@pytest.mark.parametrize('host, expected', [
    ('localhost', ('localhost', 5672)),
    ('example.com:1234', ('example.com', 1234)),
    ('127.0.0.1:5673', ('127.0.0.1', 5673)),
    ('[::1]:5674', ('::1', 5674)),
    ('[::1]', ('::1', 5672)),
    ('::1', ('::1', 5672)),
    ('fe80::1:2', ('fe80::1:2', 5672)),
    ('[FE80::1]:99', ('FE80::1', 99)),
])
def test_host_forms(host, expected):
    assert to_host_port(host) == expected


def test_tls_default_port():
    assert SSLTransport('example.com', ssl=True).port == 5671
    assert TCPTransport('example.com').port == 5672


def test_ipv6_literal_connects():
    listener = socket.socket(socket.AF_INET6)
    try:
        listener.bind(('::1', 0))
    except OSError:
        pytest.skip('no IPv6 loopback')
    port = listener.getsockname()[1]
    listener.listen(1)
    conn = Connection('[::1]:%d' % port, connect_timeout=TIMEOUT)
    conn.transport = None
    transport = conn.Transport('[::1]:%d' % port, TIMEOUT)
    transport.connect()
    server, _ = listener.accept()
    assert transport.sock.family == socket.AF_INET6
    assert transport.sock.getpeername()[1] == port
    transport.close()
    server.close()
    listener.close()


def test_every_resolved_address_tried_in_turn(monkeypatch):
    broker = FakeBroker(handshake_then_close())
    dead = socket.socket()
    dead.bind(('127.0.0.1', 0))
    dead_port = dead.getsockname()[1]
    dead.close()   # nothing listens there: connection refused
    calls = []

    def fake_getaddrinfo(host, port, *args, **kwargs):
        # the OS resolver, answering two addresses for one name
        calls.append((host, port))
        tcp = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, '')
        return [tcp + (('127.0.0.1', dead_port),),
                tcp + (('127.0.0.1', broker.port),)]

    monkeypatch.setattr(socket, 'getaddrinfo', fake_getaddrinfo)
    conn = Connection('broker.example:%d' % broker.port,
                      connect_timeout=TIMEOUT)
    conn.connect()
    assert conn.connected
    assert conn.sock.getpeername()[1] == broker.port
    conn.close()
    broker.finish()
    assert calls == [('broker.example', broker.port)]


def test_all_addresses_dead_raises_last_error(monkeypatch):
    dead = socket.socket()
    dead.bind(('127.0.0.1', 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    conn = Connection('127.0.0.1:%d' % dead_port, connect_timeout=TIMEOUT)
    with pytest.raises(ConnectionRefusedError):
        conn.connect()
    assert not conn.connected


def test_unresolvable_host():
    conn = Connection('no-such-host.invalid', connect_timeout=TIMEOUT)
    with pytest.raises(socket.gaierror) as info:
        conn.connect()
    assert 'no-such-host.invalid' in str(info.value)


@pytest.mark.parametrize('url, expected', [
    ('amqp://', {'host': 'localhost:5672', 'userid': 'guest',
                 'password': 'guest', 'virtual_host': '/', 'ssl': False}),
    ('amqp://u:p%40ss@rabbit:5673/vh', {
        'host': 'rabbit:5673', 'userid': 'u', 'password': 'p@ss',
        'virtual_host': 'vh'}),
    ('amqp://h/%2F', {'virtual_host': '/'}),
    ('amqp://h//', {'virtual_host': '/'}),
    ('amqp://[::1]:5000/', {'host': '[::1]:5000'}),
    ('amqps://u:p@h/?heartbeat=30&connect_timeout=2.5', {
        'host': 'h:5671', 'ssl': True, 'client_heartbeat': 30,
        'connect_timeout': 2.5}),
])
def test_from_url(url, expected):
    conn = Connection.from_url(url)
    for key, value in expected.items():
        actual = conn._password if key == 'password' else getattr(conn, key)
        assert actual == value, key


def test_from_url_kwargs_win_and_bad_scheme():
    conn = Connection.from_url('amqps://h/?heartbeat=30', heartbeat=5,
                               ssl={'ca_certs': '/x'})
    assert conn.client_heartbeat == 5
    assert conn.ssl == {'ca_certs': '/x'}
    with pytest.raises(ValueError):
        Connection.from_url('http://h/')


def test_from_url_password_not_in_repr():
    conn = Connection.from_url('amqp://u:hunter2@h/')
    assert 'hunter2' not in repr(conn)


def test_tls_verifies_by_default():
    transport = SSLTransport('example.com', ssl=True)
    context, hostname = transport._build_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert hostname == 'example.com'
    transport = SSLTransport('example.com', ssl={'cert_reqs': ssl.CERT_NONE})
    context, _ = transport._build_context()
    assert context.verify_mode == ssl.CERT_NONE
    assert not context.check_hostname
    with pytest.raises(ValueError):
        SSLTransport('h', ssl={'bogus': 1})._build_context()


def test_channel_max_exhaustion_without_broker_round_trip(fake_broker):
    broker = fake_broker(handshake_then_close(
        lambda peer: peer.serve_channel_open(1), channel_max=1))
    conn = broker.connect()
    conn.channel()
    with pytest.raises(ResourceError):
        conn.channel()
    with pytest.raises(ResourceError):
        conn.channel(5)
    conn.close()


def test_ipv6_refused_then_ipv4(monkeypatch):
    """'localhost' answering ::1 (nothing listening) before 127.0.0.1."""
    broker = FakeBroker(handshake_then_close())

    def fake_getaddrinfo(host, port, *args, **kwargs):
        return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP,
                 '', ('::1', port, 0, 0)),
                (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP,
                 '', ('127.0.0.1', port))]

    monkeypatch.setattr(socket, 'getaddrinfo', fake_getaddrinfo)
    conn = Connection('localhost:%d' % broker.port, connect_timeout=TIMEOUT)
    conn.connect()
    assert conn.sock.family == socket.AF_INET
    conn.close()
    broker.finish()


def test_py_amqp_ssl_dict_keys_accepted():
    transport = SSLTransport('h', ssl={
        'cert_reqs': None, 'ssl_version': ssl.PROTOCOL_TLSv1_2,
        'do_handshake_on_connect': True, 'suppress_ragged_eofs': True,
        'server_hostname': 'other.example'})
    context, hostname = transport._build_context()
    assert hostname == 'other.example'
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.TLSv1_2
    context, _ = SSLTransport('h', ssl={
        'tls_minimum_version': ssl.TLSVersion.TLSv1_3})._build_context()
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3


def test_connection_ssl_error_is_ssl_sslerror_and_survives_without_ssl():
    # kombu imports amqp.connection.SSLError; like py-amqp's, the module
    # must still import where Python was built without ssl.
    import subprocess
    import sys

    from amqp import connection
    assert connection.SSLError is ssl.SSLError
    script = (
        'import sys, amqp.transport\n'
        'del sys.modules["amqp.connection"]\n'
        'sys.modules["ssl"] = None\n'
        'from amqp.connection import SSLError\n'
        'assert SSLError.__module__ == "amqp.connection", SSLError\n')
    subprocess.run([sys.executable, '-c', script], check=True, timeout=30)
