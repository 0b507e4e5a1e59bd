import pytest

from .fakebroker import FakeBroker


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
