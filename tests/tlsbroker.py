"""The TLS RabbitMQ node the TLS tests share: a CA, server and client
certificates generated here (``cryptography``) and a LocalBroker with a
TLS listener that requires a client certificate and offers EXTERNAL
authentication.  ``tests/conftest.py`` starts one per session (the
``tls_broker`` fixture) for the integration and compat tests alike."""
import datetime
import ipaddress
import os

from amqp import _localbroker

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLIENT_CN = 'tls-client'


# -- certificates ------------------------------------------------------
def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, key, issuer, issuer_key, ca=False, sans=(), eku=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject)).issuer_name(_name(issuer))
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


# -- the TLS node --------------------------------------------------------
class TLSBroker(_localbroker.LocalBroker):
    """A LocalBroker with a TLS listener, EXTERNAL auth and the
    rabbitmq_auth_mechanism_ssl plugin (one per test session)."""

    def __init__(self, certs, **kwargs):
        super().__init__(plugins=['rabbitmq_auth_mechanism_ssl'], **kwargs)
        self.certs = certs
        self.tls_port = None

    node_prefix = 'amqp-tls'

    def config_lines(self):
        taken = _localbroker._CTL_DIST_PORTS + (self.port,)
        self.tls_port = _localbroker.free_port(exclude=taken)
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
