"""A throwaway RabbitMQ node on loopback, for ``python -m amqp`` and tests.

Started the way pytest-rabbitmq starts one (the same ``RABBITMQ_*``
variables, temporary directories, a free port), but bound to 127.0.0.1
only: the AMQP listener, the Erlang distribution port and epmd.  It uses
nothing of the client but the protocol header, so it works before the
client does.

    with LocalBroker() as broker:
        print(broker.url)
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import (IO, Dict, Iterable, List, Mapping, Optional, Sequence,
                    TypeVar)

from ..spec import PROTOCOL_HEADER

__all__ = ('LocalBroker', 'BrokerError', 'ensure_installed',
           'loopback_env', 'probe', 'RABBITMQ_SERVER', 'RABBITMQ_CTL')

logger = logging.getLogger('amqp')

RABBITMQ_BIN = '/usr/lib/rabbitmq/bin'
RABBITMQ_SERVER = RABBITMQ_BIN + '/rabbitmq-server'
RABBITMQ_CTL = RABBITMQ_BIN + '/rabbitmqctl'
LOOPBACK = '127.0.0.1'
# rabbitmqctl's own distribution ports (rabbitmq-env's defaults)
_CTL_DIST_PORTS = tuple(range(35672, 35683))
_LOOPBACK_ERL_ARGS = '-kernel inet_dist_use_interface {127,0,0,1}'
_INSTALL_HINT = (
    'RabbitMQ is not installed ({0} is missing). Install the Debian/Ubuntu '
    'package: sudo apt-get install rabbitmq-server (then stop its system '
    'service if you do not want it running: sudo systemctl disable --now '
    'rabbitmq-server), or point --url / AMQP_URL at a running broker.')


class BrokerError(RuntimeError):
    """The local RabbitMQ node could not be installed, started or reached."""


def loopback_env(env: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Return a copy of ``env`` (default ``os.environ``) confining Erlang
    and RabbitMQ to 127.0.0.1: AMQP listener, distribution port, epmd and
    the distribution port of CLI tools such as rabbitmqctl."""
    env = dict(os.environ if env is None else env)
    env['RABBITMQ_NODE_IP_ADDRESS'] = LOOPBACK
    env['ERL_EPMD_ADDRESS'] = LOOPBACK
    for name in ('RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS',
                 'RABBITMQ_CTL_ERL_ARGS'):
        current = env.get(name, '')
        if 'inet_dist_use_interface' not in current:
            env[name] = (current + ' ' + _LOOPBACK_ERL_ARGS).strip()
    if not env.get('HOME'):
        # Erlang keeps its cookie in $HOME and refuses to start without one.
        env['HOME'] = tempfile.gettempdir()
    os.makedirs(env['HOME'], exist_ok=True)
    return env


def _run_quiet(argv: Sequence[str],
               env: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """Run a best-effort command; return its exit code, or None if the
    program does not exist."""
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, check=False,
                              timeout=120, env=env).returncode
    except (OSError, subprocess.TimeoutExpired):
        return None


def stop_system_service() -> None:
    """Stop and disable the ``rabbitmq-server`` service a package install
    may have started; every step is optional (containers have no init)."""
    if os.path.isdir('/run/systemd/system') and shutil.which('systemctl'):
        _run_quiet(['systemctl', 'disable', '--now', 'rabbitmq-server'])
    elif shutil.which('service'):
        _run_quiet(['service', 'rabbitmq-server', 'stop'])
    elif shutil.which('invoke-rc.d'):
        _run_quiet(['invoke-rc.d', 'rabbitmq-server', 'stop'])
    stop_idle_epmd()


def stop_idle_epmd(env: Optional[Mapping[str, str]] = None) -> None:
    """Ask epmd to exit if no node is registered with it (``epmd -kill``
    refuses while nodes are alive, so this never disturbs a running one)."""
    epmd = shutil.which('epmd')
    if epmd is None:
        return
    try:
        names = subprocess.run(
            [epmd, '-names'], stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=10, env=env).stdout
    except (OSError, subprocess.TimeoutExpired):
        return
    if 'up and running' in names and '\nname ' not in names:
        _run_quiet([epmd, '-kill'], env=env)


def ensure_installed(server: str = RABBITMQ_SERVER) -> None:
    """Make sure ``rabbitmq-server`` exists, installing Debian's package
    with apt-get when running as root on Debian.

    Raises BrokerError with what to install when it cannot do so itself.
    """
    if os.path.exists(server):
        return
    apt_get = shutil.which('apt-get')
    if (server != RABBITMQ_SERVER or os.geteuid() != 0 or apt_get is None
            or not os.path.exists('/etc/debian_version')):
        raise BrokerError(_INSTALL_HINT.format(server))
    logger.warning('%s is missing: installing rabbitmq-server with apt-get',
                   server)
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    for argv in ([apt_get, 'update'],
                 [apt_get, 'install', '-y', 'rabbitmq-server']):
        done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, check=False)
        if done.returncode:
            tail = done.stdout.decode(errors='replace')[-2000:]
            raise BrokerError('{0} failed (exit {1}):\n{2}\n{3}'.format(
                ' '.join(argv), done.returncode, tail,
                _INSTALL_HINT.format(server)))
    stop_system_service()
    if not os.path.exists(server):
        raise BrokerError(_INSTALL_HINT.format(server))


def free_port(host: str = LOOPBACK, exclude: Iterable[int] = ()) -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
        if port not in exclude:
            return port


def probe(host: str, port: int, timeout: float = 3.0) -> bool:
    """Send the protocol header to ``host:port``; return True if the peer
    answers with a method frame on channel 0 (Connection.Start).

    Raises OSError if nothing accepts the connection.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(PROTOCOL_HEADER)
        head = b''
        try:
            while len(head) < 7:
                chunk = sock.recv(7 - len(head))
                if not chunk:
                    break
                head += chunk
        except socket.timeout:
            return False
    # frame type 1 (method), channel 0
    return head[:3] == b'\x01\x00\x00'


_Broker = TypeVar('_Broker', bound='LocalBroker')


class LocalBroker:
    """A RabbitMQ node of its own, on 127.0.0.1, in temporary directories.

    Arguments:
        port: AMQP port; a free one by default.
        timeout: seconds to wait for the node to answer AMQP.
        install: install rabbitmq-server with apt-get if it is missing
            and we are root on Debian.
        server, ctl: paths of the rabbitmq-server and rabbitmqctl scripts.

    Raises BrokerError from ``start()`` when the node cannot be started.
    """

    #: node names are PREFIX-PORT@localhost
    node_prefix = 'amqp-local'

    def __init__(self, port: Optional[int] = None, timeout: float = 60.0,
                 install: bool = True, server: str = RABBITMQ_SERVER,
                 ctl: str = RABBITMQ_CTL, userid: str = 'guest',
                 password: str = 'guest', plugins: Iterable[str] = ()
                 ) -> None:
        self.host = LOOPBACK
        self.port = port
        self.plugins = tuple(plugins)
        #: further ports the configuration listens on (see config_lines)
        self.reserved_ports: List[int] = []
        self.timeout = timeout
        self.install = install
        self.server = server
        self.ctl_path = ctl
        self.userid = userid
        self.password = password
        self.node: Optional[str] = None
        self.env: Optional[Dict[str, str]] = None
        self.directory: Optional[str] = None
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._output: Optional[IO[bytes]] = None
        self._epmd_was_running = False

    @property
    def url(self) -> str:
        return 'amqp://{0}:{1}@{2}:{3}//'.format(
            self.userid, self.password, self.host, self.port)

    def __enter__(self: _Broker) -> _Broker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self: _Broker) -> _Broker:
        """Start the node and wait until it answers the protocol header."""
        if self._proc is not None:
            return self
        if self.install:
            ensure_installed(self.server)
        elif not os.path.exists(self.server):
            raise BrokerError(_INSTALL_HINT.format(self.server))
        self.directory = tempfile.mkdtemp(prefix='amqp-localbroker-')
        try:
            self._spawn()
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self) -> None:
        d = self.directory
        assert d is not None  # start() made it
        if self.port is None:
            self.port = free_port(exclude=_CTL_DIST_PORTS)
        config = os.path.join(d, 'rabbitmq.conf')
        lines = self.config_lines()
        if lines:
            with open(config, 'w') as f:
                f.write('\n'.join(lines) + '\n')
        dist_port = free_port(exclude=(self.port,) + _CTL_DIST_PORTS +
                              tuple(self.reserved_ports))
        self.node = '{0}-{1}@localhost'.format(self.node_prefix, self.port)
        plugins = os.path.join(d, 'enabled_plugins')
        with open(plugins, 'w') as f:
            f.write('[{0}].\n'.format(', '.join(self.plugins)))
        env = loopback_env()
        env.update({
            'RABBITMQ_NODE_PORT': str(self.port),
            'RABBITMQ_DIST_PORT': str(dist_port),
            'RABBITMQ_NODENAME': self.node,
            'RABBITMQ_MNESIA_BASE': os.path.join(d, 'mnesia'),
            'RABBITMQ_LOG_BASE': os.path.join(d, 'log'),
            'RABBITMQ_ENABLED_PLUGINS_FILE': plugins,
            # Keep the node away from the system's configuration and cookie.
            'RABBITMQ_CONFIG_FILE': config,
            'RABBITMQ_ADVANCED_CONFIG_FILE': os.path.join(d, 'advanced'),
            'RABBITMQ_CONF_ENV_FILE': os.path.join(d, 'rabbitmq-env.conf'),
            'HOME': d,
        })
        self.env = env
        self._epmd_was_running = self._epmd_running()
        self._output = open(os.path.join(d, 'server.out'), 'wb')
        try:
            self._proc = subprocess.Popen(
                [self.server], env=env, cwd=d, stdin=subprocess.DEVNULL,
                stdout=self._output, stderr=subprocess.STDOUT,
                start_new_session=True)  # ^C in a terminal is ours to handle
        except OSError as exc:
            raise BrokerError('cannot run {0}: {1}'.format(self.server, exc))

    def config_lines(self) -> List[str]:
        """Lines of the node's rabbitmq.conf (none by default).

        Subclasses add listeners here; a port they take must go into
        ``self.reserved_ports`` so the distribution port avoids it.
        """
        return []

    def _epmd_running(self) -> bool:
        try:
            socket.create_connection((LOOPBACK, 4369), timeout=1).close()
        except OSError:
            return False
        return True

    def _wait_until_ready(self) -> None:
        proc, port = self._proc, self.port
        assert proc is not None and port is not None  # _spawn() set them
        deadline = time.monotonic() + self.timeout
        while True:
            if proc.poll() is not None:
                raise BrokerError(
                    'rabbitmq-server exited with code {0} before it was '
                    'ready:\n{1}'.format(proc.returncode,
                                         self.output_tail()))
            try:
                if probe(self.host, port, timeout=2.0):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BrokerError(
                    'rabbitmq-server did not answer AMQP on {0}:{1} within '
                    '{2:.0f} s:\n{3}'.format(self.host, self.port,
                                             self.timeout,
                                             self.output_tail()))
            time.sleep(0.25)

    def output_tail(self, limit: int = 3000) -> str:
        """The end of the node's console output, for error messages."""
        if self.directory is None:
            return ''
        try:
            with open(os.path.join(self.directory, 'server.out'), 'rb') as f:
                return f.read()[-limit:].decode(errors='replace')
        except (OSError, TypeError):
            return ''

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """Run rabbitmqctl against this node; return its standard output."""
        if self.env is None or self.node is None:
            raise BrokerError('the node is not running')
        return subprocess.run(
            [self.ctl_path, '-n', self.node] + list(args), env=self.env,
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            check=True, timeout=timeout).stdout

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the node (SIGTERM is a clean shutdown for RabbitMQ; SIGKILL
        after ``timeout``) and remove its directories."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    logger.warning('rabbitmq-server ignored SIGTERM; killing')
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except OSError:
                        proc.kill()
                    proc.wait()
            if not self._epmd_was_running:
                stop_idle_epmd(self.env)
        if self._output is not None:
            self._output.close()
            self._output = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
