import aioice.ice
import pytest

from sipbridge.agent.ice import loopback_addresses_for, use_host_addresses


@pytest.fixture(autouse=True)
def _restore():
    yield
    use_host_addresses(None)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("http://127.0.0.1:8080/whip", ["127.0.0.1"]),
        ("http://localhost:8080/whip", ["127.0.0.1"]),
        ("http://[::1]:8080/whip", ["::1"]),
        ("127.0.0.5", ["127.0.0.5"]),
        ("http://agent.example.com/whip", None),
        ("http://192.0.2.10:8080/whip", None),
    ],
)
def test_loopback_agents_get_loopback_candidates(target, expected):
    assert loopback_addresses_for(target) == expected


def test_chosen_addresses_replace_aioice_default_and_none_restores_it():
    use_host_addresses(["127.0.0.1", "::1"])
    assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1", "::1"]
    use_host_addresses(None)
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, False)
