"""TLS against a second RabbitMQ node with a TLS listener, using a CA,
server and client certificates generated here (``cryptography``): dict
options, an SSLContext, hostname and CA verification, a required client
certificate and EXTERNAL authentication as the certificate's CN.
The node and its certificates come from ``tests/tlsbroker.py``."""
import ssl

import pytest
from tlsbroker import CLIENT_CN
from tlsbroker import client_ssl_options as _opts

from amqp import Connection
from amqp.exceptions import AccessRefused

pytestmark = [pytest.mark.tls, pytest.mark.integration]

TIMEOUT = 10


def _tls_connect(tls_broker, host='localhost', **kwargs):
    kwargs.setdefault('connect_timeout', TIMEOUT)
    conn = Connection('%s:%d' % (host, tls_broker.tls_port), **kwargs)
    conn.connect()
    return conn


def test_dict_options(tls_broker):
    conn = _tls_connect(tls_broker, ssl=_opts(tls_broker.certs))
    try:
        assert isinstance(conn.sock, ssl.SSLSocket)
        assert conn.sock.getpeercert()['subject'][0][0][1] == 'localhost'
        ch = conn.channel()
        ch.queue_declare('', exclusive=True)
    finally:
        conn.close()
    assert not conn.connected


def test_ip_address_matches_san(tls_broker):
    conn = _tls_connect(tls_broker, host='127.0.0.1',
                        ssl=_opts(tls_broker.certs))
    conn.close()


def test_ssl_context(tls_broker):
    certs = tls_broker.certs
    context = ssl.create_default_context(cafile=certs['ca'])
    context.load_cert_chain(certs['client_cert'], certs['client_key'])
    conn = _tls_connect(tls_broker, ssl=context)
    assert conn.sock.context is context
    conn.close()


def test_from_url_amqps(tls_broker):
    conn = Connection.from_url(
        'amqps://guest:guest@localhost:%d/' % tls_broker.tls_port,
        ssl=_opts(tls_broker.certs), connect_timeout=TIMEOUT)
    conn.connect()
    assert isinstance(conn.sock, ssl.SSLSocket)
    conn.close()


def test_hostname_mismatch_refused(tls_broker):
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        _tls_connect(tls_broker, ssl=_opts(
            tls_broker.certs, server_hostname='not-localhost.example'))
    assert 'hostname' in str(info.value).lower() or \
        'match' in str(info.value).lower()


def test_untrusted_ca_refused(tls_broker):
    with pytest.raises(ssl.SSLCertVerificationError):
        _tls_connect(tls_broker, ssl=_opts(
            tls_broker.certs, ca_certs=tls_broker.certs['other_ca']))


def test_system_cas_do_not_trust_a_private_ca(tls_broker):
    with pytest.raises(ssl.SSLCertVerificationError):
        _tls_connect(tls_broker, ssl=True)


def test_verification_off_only_explicitly(tls_broker):
    conn = _tls_connect(tls_broker, ssl={
        'cert_reqs': ssl.CERT_NONE,
        'certfile': tls_broker.certs['client_cert'],
        'keyfile': tls_broker.certs['client_key']})
    conn.close()


def test_client_certificate_required(tls_broker):
    conn = Connection('localhost:%d' % tls_broker.tls_port,
                      ssl={'ca_certs': tls_broker.certs['ca']},
                      connect_timeout=TIMEOUT)
    # TLS 1.3 reports the server's refusal on the first read, so it may
    # surface as an SSL alert or as the socket closing during AMQP.
    with pytest.raises((ssl.SSLError, OSError)):
        conn.connect()
    assert not conn.connected


def test_external_auth_as_certificate_cn(tls_broker):
    conn = _tls_connect(tls_broker, ssl=_opts(tls_broker.certs),
                        login_method='EXTERNAL')
    try:
        assert conn.connected
        out = tls_broker.ctl('list_connections', 'user', 'auth_mechanism')
        assert CLIENT_CN in out and 'EXTERNAL' in out
    finally:
        conn.close()


def test_external_auth_unknown_user_refused(tls_broker):
    tls_broker.ctl('delete_user', CLIENT_CN)
    try:
        with pytest.raises(AccessRefused):
            _tls_connect(tls_broker, ssl=_opts(tls_broker.certs),
                         login_method='EXTERNAL')
    finally:
        tls_broker.ctl('add_user', CLIENT_CN, 'unused-password-for-plain')
        tls_broker.ctl('set_permissions', '-p', '/', CLIENT_CN,
                       '.*', '.*', '.*')


def test_plain_port_still_plain(tls_broker):
    conn = Connection('127.0.0.1:%d' % tls_broker.port,
                      connect_timeout=TIMEOUT)
    conn.connect()
    assert not isinstance(conn.sock, ssl.SSLSocket)
    conn.close()


# -- the amqp command line over TLS ----------------------------------------
def _cli(*args, input=''):
    import subprocess
    import sys
    return subprocess.run([sys.executable, '-m', 'amqp'] + list(args),
                          input=input, capture_output=True, text=True,
                          timeout=60)


def test_cli_tls_options(tls_broker):
    certs = tls_broker.certs
    url = 'amqps://guest:guest@localhost:%d//' % tls_broker.tls_port
    client = ['--cert', certs['client_cert'], '--key', certs['client_key']]
    ok = _cli('ping', '--url', url, '--cacert', certs['ca'], *client)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith('amqps://guest:***@localhost:')
    # the system store does not know the test CA
    refused = _cli('ping', '--url', url, *client)
    assert refused.returncode == 3
    assert refused.stderr.startswith('amqp: TLS with localhost:%d: the '
                                     'broker certificate was not accepted'
                                     % tls_broker.tls_port)
    assert len(refused.stderr.splitlines()) == 1
    unverified = _cli('ping', '--url', url, '--insecure', *client)
    assert unverified.returncode == 0, unverified.stderr


def test_cli_external_login_with_a_client_certificate(tls_broker):
    certs = tls_broker.certs
    url = 'amqps://localhost:%d//?login_method=EXTERNAL' % (
        tls_broker.tls_port)
    proc = _cli('shell', '--no-trace', '--url', url, '--cacert', certs['ca'],
                '--cert', certs['client_cert'], '--key', certs['client_key'],
                input='print(channel.queue_declare("", exclusive=True)'
                      '.queue[:8])\n')
    assert proc.returncode == 0, proc.stderr
    assert 'amq.gen-' in proc.stdout
