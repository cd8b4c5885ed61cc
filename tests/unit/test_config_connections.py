"""The connection settings: defaults, the policy the bridge builds from them, and clear errors."""

import pytest

from sipbridge.bridge import connection_policy
from sipbridge.config import load_config
from sipbridge.settings.values import ConfigError


def test_defaults_become_the_connection_policy():
    config = load_config(env={})
    policy = connection_policy(config, lambda ip: ip == "192.0.2.1")
    assert (policy.max_connections, policy.max_per_source, policy.trunk_reserve) == (1000, 32, 100)
    assert (policy.handshake_timeout, policy.first_message_timeout) == (5.0, 10.0)
    assert policy.trusted("192.0.2.1") and not policy.trusted("198.51.100.1")


def test_settings_from_the_environment():
    config = load_config(
        env={
            "SIPBRIDGE_SIP_MAX_CONNECTIONS": "200",
            "SIPBRIDGE_SIP_MAX_CONNECTIONS_PER_SOURCE": "4",
            "SIPBRIDGE_SIP_TRUNK_CONNECTIONS": "50",
            "SIPBRIDGE_SIP_TLS_HANDSHAKE_TIMEOUT": "2.5",
            "SIPBRIDGE_SIP_FIRST_MESSAGE_TIMEOUT": "3",
        }
    )
    policy = connection_policy(config, lambda ip: False)
    assert (policy.max_connections, policy.max_per_source, policy.trunk_reserve) == (200, 4, 50)
    assert (policy.handshake_timeout, policy.first_message_timeout) == (2.5, 3.0)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SIP_MAX_CONNECTIONS", "0", "sip_max_connections"),
        ("SIP_MAX_CONNECTIONS_PER_SOURCE", "many", "sip_max_connections_per_source"),
        ("SIP_TLS_HANDSHAKE_TIMEOUT", "0", "sip_tls_handshake_timeout"),
        ("SIP_FIRST_MESSAGE_TIMEOUT", "-1", "sip_first_message_timeout"),
        ("SIP_TRUNK_CONNECTIONS", "1000", "sip_trunk_connections must be below sip_max_connections"),
    ],
)
def test_bad_values_name_the_setting(name, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(env={f"SIPBRIDGE_{name}": value})
