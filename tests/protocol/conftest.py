import pytest

from .fakebroker import FakeBroker
from .servers import Server


@pytest.fixture
def fake_broker():
    """``fake_broker(script)`` starts a FakeBroker; all are finished (and
    their script errors re-raised) at teardown."""
    brokers = []

    def start(script):
        broker = FakeBroker(script)
        brokers.append(broker)
        return broker

    yield start
    for broker in brokers:
        broker.finish()


@pytest.fixture
def many_channel_server():
    """``many_channel_server(**options)`` starts a :class:`.servers.Server`;
    all are finished (and their errors re-raised) at teardown."""
    servers = []

    def start(**kwargs):
        s = Server(**kwargs)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.finish()
