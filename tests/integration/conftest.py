"""Fixtures shared by the integration tests: a connection to the
session's broker and a channel on it, both closed afterwards."""
import pytest


@pytest.fixture
def conn(broker):
    c = broker.connect()
    yield c
    c.close()


@pytest.fixture
def ch(conn):
    return conn.channel()
