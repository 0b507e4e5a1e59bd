"""The TLS RabbitMQ node the TLS tests share: a CA, server and client
certificates (``testkit.make_certificates``) and a LocalBroker with a
TLS listener that requires a client certificate and offers EXTERNAL
authentication.  ``tests/conftest.py`` starts one per session (the
``tls_broker`` fixture) for the integration and compat tests alike."""
from amqp.cli import localbroker
from testkit import CLIENT_CN, make_certificates

__all__ = ('CLIENT_CN', 'make_certificates', 'TLSBroker',
           'client_ssl_options')


# -- the TLS node --------------------------------------------------------
class TLSBroker(localbroker.LocalBroker):
    """A LocalBroker with a TLS listener, EXTERNAL auth and the
    rabbitmq_auth_mechanism_ssl plugin (one per test session)."""

    def __init__(self, certs, **kwargs):
        super().__init__(plugins=['rabbitmq_auth_mechanism_ssl'], **kwargs)
        self.certs = certs
        self.tls_port = None

    node_prefix = 'amqp-tls'

    def config_lines(self):
        taken = localbroker._CTL_DIST_PORTS + (self.port,)
        self.tls_port = localbroker.free_port(exclude=taken)
        self.reserved_ports.append(self.tls_port)
        c = self.certs
        return [
            'listeners.tcp.default = 127.0.0.1:%d' % self.port,
            'listeners.ssl.default = 127.0.0.1:%d' % self.tls_port,
            'ssl_options.cacertfile = %s' % c['ca'],
            'ssl_options.certfile = %s' % c['server_cert'],
            'ssl_options.keyfile = %s' % c['server_key'],
            'ssl_options.verify = verify_peer',
            'ssl_options.fail_if_no_peer_cert = true',
            'auth_mechanisms.1 = PLAIN',
            'auth_mechanisms.2 = AMQPLAIN',
            'auth_mechanisms.3 = EXTERNAL',
            'ssl_cert_login_from = common_name',
        ]


def client_ssl_options(certs, **extra):
    """``ssl=`` options for a client of the TLS node: the test CA and the
    client certificate (the node refuses clients without one)."""
    opts = {'ca_certs': certs['ca'], 'certfile': certs['client_cert'],
            'keyfile': certs['client_key']}
    opts.update(extra)
    return opts
