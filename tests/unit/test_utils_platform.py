"""amqp.utils and amqp.platform: the helpers and constants py-amqp 5.x
exposes and other code imports (celery, nameko, socket_settings built from
KNOWN_TCP_OPTS).  tests/compat/test_differential.py compares their values
with py-amqp 5.4.2's."""
import logging
import os
import socket
import sys

import pytest

import amqp
from amqp import platform, utils


def test_modules_reachable_from_the_package_like_py_amqp():
    assert amqp.utils is utils and amqp.platform is platform
    assert utils.promise is amqp.promise


@pytest.mark.parametrize('text', ['', 'plain', 'żółw ☃', '\ud800 lone'])
def test_str_to_bytes_and_back(text):
    raw = utils.str_to_bytes(text)
    assert isinstance(raw, bytes)
    assert utils.bytes_to_str(raw) == text
    # anything that is not str/bytes goes through untouched
    for other in (None, 5, bytearray(b'x')):
        assert utils.str_to_bytes(other) is other
        assert utils.bytes_to_str(other) is other
    assert utils.str_to_bytes(b'x') == b'x' and utils.bytes_to_str('x') == 'x'


def test_get_logger_adds_a_null_handler_once():
    name = 'amqp.tests.get_logger.%d' % os.getpid()
    log = utils.get_logger(name)
    assert log is logging.getLogger(name)
    assert [type(h) for h in log.handlers] == [utils.NullHandler]
    assert utils.get_logger(log) is log
    assert len(log.handlers) == 1
    assert utils.NullHandler is logging.NullHandler


def test_get_errno():
    assert utils.get_errno(OSError(32, 'broken pipe')) == 32
    assert utils.get_errno(socket.timeout('timed out')) == 0
    assert utils.get_errno(ValueError()) == 0

    class Old(Exception):
        pass
    assert utils.get_errno(Old(104, 'reset')) == 104


@pytest.mark.skipif(sys.platform.startswith('win'), reason='POSIX fcntl')
def test_set_cloexec_on_a_real_descriptor():
    r, w = os.pipe()
    try:
        utils.set_cloexec(r, True)
        assert not os.get_inheritable(r)
        utils.set_cloexec(r, False)
        assert os.get_inheritable(r)
    finally:
        os.close(r)
        os.close(w)


def test_coro_primes_the_generator():
    seen = []

    @utils.coro
    def collector(prefix):
        while True:
            seen.append(prefix + (yield))

    co = collector('x')
    co.send('a')
    co.send('b')
    assert seen == ['xa', 'xb']
    assert collector.__name__ == 'collector'


def test_platform_constants():
    assert platform.SOL_TCP == getattr(socket, 'SOL_TCP', socket.IPPROTO_TCP)
    assert 'TCP_NODELAY' in platform.KNOWN_TCP_OPTS
    if sys.platform.startswith('linux'):
        assert len(platform.LINUX_VERSION) == 3
        assert all(isinstance(n, int) for n in platform.LINUX_VERSION)
    else:
        assert platform.LINUX_VERSION is None
    assert platform.AMQP_PROTOCOL_HEADER == b'AMQP\x00\x00\x09\x01'
    assert platform.SIGNED_INT_MAX == 2**31 - 1
    assert platform.set_cloexec is utils.set_cloexec
    assert set(platform.DEFAULT_SOCKET_SETTINGS) == {
        'TCP_NODELAY', 'TCP_USER_TIMEOUT', 'TCP_KEEPIDLE', 'TCP_KEEPINTVL',
        'TCP_KEEPCNT'}


def test_known_tcp_options_can_be_set_on_a_socket_here():
    # what socket_settings built from KNOWN_TCP_OPTS relies on
    with socket.socket() as sock:
        for name in sorted(platform.KNOWN_TCP_OPTS):
            opt = getattr(socket, name, None)
            if opt is not None:
                sock.getsockopt(platform.SOL_TCP, opt)


@pytest.mark.parametrize('name, release, present, absent', [
    ('linux', '6.1.0-18-amd64', {'TCP_USER_TIMEOUT', 'TCP_CORK'}, set()),
    ('linux', '2.6.32-5', {'TCP_CORK'}, {'TCP_USER_TIMEOUT'}),
    ('linux', '4.4.0-19041-Microsoft', {'TCP_KEEPIDLE'}, {'TCP_CORK'}),
    ('darwin', '23.1.0', {'TCP_MAXSEG'}, {'TCP_USER_TIMEOUT'}),
    ('freebsd13', '13.2', {'TCP_MAXSEG'}, {'TCP_USER_TIMEOUT'}),
    ('win32', '10', {'TCP_NODELAY'}, {'TCP_KEEPIDLE'}),
    ('sunos5', '5.11', {'TCP_NODELAY'}, {'TCP_MAXSEG', 'TCP_USER_TIMEOUT'}),
])
def test_known_tcp_options_per_platform(name, release, present, absent):
    opts = platform._known_tcp_opts(name, release)
    assert present <= opts and not absent & opts


def test_linux_version_parsing():
    assert platform._linux_version_to_tuple('5.10.0-28-amd64') == (5, 10, 0)
    assert platform._linux_version_to_tuple('6.8.12+rpt') == (6, 8, 12)
    assert platform._linux_version_to_tuple('4.x.1') == (4, 0, 1)


def test_connection_module_defaults_and_logger_names():
    from amqp import connection
    assert amqp.Connection.library_properties is \
        connection.LIBRARY_PROPERTIES
    assert amqp.Connection.negotiate_capabilities is \
        connection.NEGOTIATE_CAPABILITIES
    for cap in ('consumer_cancel_notify', 'connection.blocked',
                'authentication_failure_close'):
        assert connection.NEGOTIATE_CAPABILITIES[cap] is True
    assert connection.AMQP_LOGGER.name == 'amqp'
    assert connection.AMQP_HEARTBEAT_LOGGER.name == \
        'amqp.connection.Connection.heartbeat_tick'
