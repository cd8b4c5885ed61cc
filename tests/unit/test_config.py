import pytest

from sipbridge.bridge import connection_policy
from sipbridge.config import Config, load_config
from sipbridge.settings.values import ConfigError, HostPort, PortRange


def test_defaults_match_the_cli_contract():
    config = load_config(env={})
    assert config.sip_listen == HostPort("0.0.0.0", 5060)
    assert config.api_listen == HostPort("127.0.0.1", 8090) and config.api_keys == ()
    assert config.rtp_ports == PortRange(10000, 20000)
    assert config.agent is None and config.public_ip is None


def test_precedence_file_then_env_then_flags(tmp_path):
    path = tmp_path / "sipbridge.toml"
    path.write_text('sip_listen = "127.0.0.1:5070"\nrtp_ports = "30000-30100"\npublic_ip = "127.0.0.2"\n')
    env = {"SIPBRIDGE_RTP_PORTS": "40000-40010", "SIPBRIDGE_AGENT": "http://127.0.0.1:9/whip"}
    config = load_config(path, env=env, overrides={"public_ip": "127.0.0.3", "api_listen": None})
    assert config.sip_listen == HostPort("127.0.0.1", 5070)
    assert config.rtp_ports == PortRange(40000, 40010)
    assert config.agent == "http://127.0.0.1:9/whip"
    assert config.public_ip == "127.0.0.3"
    assert config.api_listen == Config().api_listen


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("sip_listen", "nonsense", "HOST:PORT"),
        ("sip_listen", "127.0.0.1:99999", "out of range"),
        ("rtp_ports", "20000-10000", "above"),
        ("public_ip", "not-an-ip", "not an IP"),
        ("agent", "ftp://x", "http"),
        ("agent_timeout", "-1", "positive"),
        ("media_public_ip", "example.com", "not an IP"),
        ("tls_cert_file", "/nonexistent/cert.pem", "no such file"),
        ("sip_tcp", "maybe", "true or false"),
        ("session_min_se", "0", "positive"),
        ("agent_silence_timeout", "0.5", "from 1 to 60"),
        ("agent_resume_window", "-2", "0 or more"),
        ("agent_resume_window", "soon", "not a number"),
        ("sip_rate_limit", "-1", "0 or more"),
        ("sip_rate_burst", "0", "from 1 to"),
        ("sip_rate_sources", "3", "from 16 to"),
        ("scanner_action", "shout", "expected one of"),
        ("unknown_source_action", "allow", "expected one of"),
        ("auth_realm", 'a"b', "realm"),
        ("auth_algorithms", "MD4", "expected one of"),
        ("max_calls_per_source", "-1", "from 0 to"),
        ("log_format", "yaml", "text, json"),
        ("log_redact", "sometimes", "true or false"),
        ("degraded_load", "1.5", "from 0.01 to 1"),
        ("degraded_load", "0", "from 0.01 to 1"),
        ("drain_grace", "-1", "0 or more"),
        ("call_records", "/nonexistent-dir/calls.jsonl", "no such directory"),
        ("call_records", "/tmp", "is a directory"),
    ],
)
def test_bad_values_name_the_setting(key, value, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(env={f"SIPBRIDGE_{key.upper()}": value})
    assert key in str(info.value)


def test_unknown_key_in_file_is_an_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("sip_lisen = '127.0.0.1:5060'\n")
    with pytest.raises(ConfigError, match="unknown setting 'sip_lisen'"):
        load_config(path, env={})


def test_broken_toml_is_reported(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("sip_listen = \n")
    with pytest.raises(ConfigError, match="config file"):
        load_config(path, env={})


def test_tls_certificate_and_key_come_together(tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="set together"):
        load_config(env={"SIPBRIDGE_TLS_CERT_FILE": str(cert)})
    config = load_config(env={"SIPBRIDGE_TLS_CERT_FILE": str(cert), "SIPBRIDGE_TLS_KEY_FILE": str(cert)})
    assert config.tls_key_file == str(cert) and "tls_key_file" not in repr(config)


def test_session_expires_must_not_be_below_min_se():
    with pytest.raises(ConfigError, match="session_expires"):
        load_config(env={"SIPBRIDGE_SESSION_EXPIRES": "60", "SIPBRIDGE_SESSION_MIN_SE": "90"})


def test_clock_slot_divides_the_20_ms_frame():
    assert load_config(env={}).clock_slot_ms == 2
    assert load_config(env={"SIPBRIDGE_CLOCK_SLOT_MS": "5"}).clock_slot_ms == 5
    with pytest.raises(ConfigError, match="clock_slot_ms"):
        load_config(env={"SIPBRIDGE_CLOCK_SLOT_MS": "3"})


def test_opus_fec_needs_a_mode_that_has_it():
    with pytest.raises(ConfigError, match="opus_fec needs opus_application"):
        load_config(env={"SIPBRIDGE_OPUS_FEC": "true"})  # the default mode, lowdelay, is CELT only
    config = load_config(env={"SIPBRIDGE_OPUS_FEC": "true", "SIPBRIDGE_OPUS_APPLICATION": "voip"})
    assert config.opus_fec and config.opus_application == "voip"


PROVIDERS_TOML = """
[api]
keys = ["k-0123456789abcdef"]
listen = "0.0.0.0:8090"

[providers.asterisk]
type = "asterisk"
address = "127.0.0.1:5060"
transport = "udp"
username = "sipbridge"
password = "s3cret-in-file"
destinations = ['^1\\d{3}$']

[providers.twilio]
type = "twilio"
address = "example.pstn.twilio.com"
transport = "tls"
inbound_cidrs = ["54.172.60.0/30", "127.0.0.1"]
"""


def test_api_and_provider_sections(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(PROVIDERS_TOML)
    config = load_config(path, env={"SIPBRIDGE_PROVIDER_TWILIO_PASSWORD": "from-env"})
    assert config.api_keys == ("k-0123456789abcdef",) and config.api_listen == HostPort("0.0.0.0", 8090)
    asterisk, twilio = config.providers
    assert asterisk.name == "asterisk" and asterisk.address == HostPort("127.0.0.1", 5060)
    assert asterisk.destinations == (r"^1\d{3}$",) and asterisk.password == "s3cret-in-file"
    assert twilio.address == HostPort("example.pstn.twilio.com", 5061) and twilio.transport == "tls"
    assert twilio.inbound_cidrs == ("54.172.60.0/30", "127.0.0.1/32") and twilio.password == "from-env"
    assert "s3cret" not in repr(config) and "k-0123" not in repr(config)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('type = "asterisk"', "'address' is required"),
        ('type = "pbx"\naddress = "127.0.0.1"', "expected one of"),
        ('type = "generic"\naddress = "127.0.0.1"\ndestinations = ["("]', "not a regular expression"),
        ('type = "generic"\naddress = "127.0.0.1"\ninbound_cidrs = ["10.0.0.0/33"]', "CIDR"),
        ('type = "generic"\naddress = "127.0.0.1"\nregister = true', "needs a username"),
        ('type = "generic"\naddress = "127.0.0.1"\ncolour = "red"', "unknown setting 'colour'"),
        ('type = "generic"\naddress = "127.0.0.1"\ninbound_username = "pbx"', "go together"),
        (
            'type = "generic"\naddress = "127.0.0.1"\ninbound_username = "a b"\ninbound_password = "p"',
            "user name",
        ),
    ],
)
def test_bad_provider_settings_name_the_provider(tmp_path, table, message):
    path = tmp_path / "c.toml"
    path.write_text(f"[providers.trunk]\n{table}\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path, env={})
    assert "providers.trunk" in str(info.value)


def test_open_api_without_keys_is_refused():
    with pytest.raises(ConfigError, match="no API keys"):
        load_config(env={"SIPBRIDGE_API_LISTEN": "0.0.0.0:8090"})
    key = "k-0123456789abcdef"  # "a" * 16 was accepted here once: a placeholder, now refused
    config = load_config(env={"SIPBRIDGE_API_LISTEN": "0.0.0.0:8090", "SIPBRIDGE_API_KEYS": key})
    assert config.api_keys == (key,)


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ("   ", "only blanks"),
        (" \t , ", "only blanks"),
        ("short-key-123", "at least 16 characters"),
        ("aaaaaaaaaaaaaaaa", "at least 8 different characters"),
        ("abcabcabcabcabcabc", "at least 8 different characters"),
        ("1234567812345678", "a shorter string repeated"),
        ("abcdefgh-abcdefgh-abcdefgh", "a shorter string repeated"),
        ("abcd efgh ijkl mnop", "blanks"),
        ("k-0123456789abcdef,k-01234567\u00e9abcdefgh", "key 2 of 2 holds blanks or characters other than"),
    ],
)
def test_weak_or_blank_api_keys_are_refused_without_showing_them(keys, problem):
    with pytest.raises(ConfigError, match=problem) as info:
        load_config(env={"SIPBRIDGE_API_KEYS": keys})
    assert "api_keys" in str(info.value)
    assert all(key.strip() not in str(info.value) for key in keys.split(",") if key.strip())


def test_api_keys_in_a_toml_list_follow_the_same_rules(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[api]\nkeys = ["  "]\n')
    with pytest.raises(ConfigError, match="blanks"):
        load_config(path, env={})
    path.write_text('[api]\nkeys = ["k-0123456789abcdef", "0f3a9c41d27be865"]\n')
    assert load_config(path, env={}).api_keys == ("k-0123456789abcdef", "0f3a9c41d27be865")


def test_a_provider_has_a_home_country_for_its_numbers(tmp_path):
    path = tmp_path / "c.toml"
    table = 'type = "generic"\naddress = "127.0.0.1"\n'
    path.write_text(f'[providers.uk]\n{table}country = "gb"\n[providers.plain]\n{table}')
    uk, plain = load_config(path, env={}).providers
    assert uk.country == "GB" and plain.country is None  # None: the type's default (US)
    path.write_text(f'[providers.trunk]\n{table}country = "XX"\n')
    with pytest.raises(ConfigError, match="providers.trunk.country: expected one of"):
        load_config(path, env={})


def test_the_countries_config_accepts_are_the_dialling_plans_policy_knows():
    from sipbridge.providers.policy import DIALLING_PLANS
    from sipbridge.settings.provider import COUNTRIES

    assert sorted(COUNTRIES) == sorted(DIALLING_PLANS)


def test_inbound_credentials_and_admission_settings(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        'scanner_signatures = ["evil-dialer"]\nauth_algorithms = ["sha-256", "MD5"]\n'
        '[providers.pbx]\ntype = "asterisk"\naddress = "127.0.0.1"\ninbound_username = "asterisk"\n'
    )
    config = load_config(path, env={"SIPBRIDGE_PROVIDER_PBX_INBOUND_PASSWORD": "in-secret"})
    (pbx,) = config.providers
    assert pbx.inbound_username == "asterisk" and pbx.inbound_password == "in-secret"
    assert "in-secret" not in repr(config)
    assert config.scanner_signatures == ("evil-dialer",) and config.auth_algorithms == ("SHA-256", "MD5")
    assert (config.sip_rate_limit, config.sip_rate_burst, config.scanner_action) == (20.0, 60, "drop")


def test_an_inbound_username_says_which_trunk_calls_so_it_is_unique(tmp_path):
    table = 'type = "generic"\naddress = "127.0.0.1"\ninbound_username = "pbx"\ninbound_password = "p"\n'
    path = tmp_path / "c.toml"
    path.write_text(f"[providers.a]\n{table}[providers.b]\n{table}")
    with pytest.raises(ConfigError, match="unique"):
        load_config(path, env={})


def test_operations_settings_defaults_and_sources(tmp_path):
    config = load_config(env={})
    assert (config.log_format, config.log_redact, config.degraded_load) == ("text", True, 0.8)
    assert config.drain_grace == 30.0 and config.call_records is None
    path = tmp_path / "sipbridge.toml"
    path.write_text(f'log_format = "json"\ndrain_grace = 5\ncall_records = "{tmp_path}/calls.jsonl"\n')
    env = {"SIPBRIDGE_LOG_REDACT": "false", "SIPBRIDGE_DEGRADED_LOAD": "0.9"}
    config = load_config(path, env=env, overrides={"log_format": "text"})
    assert (config.log_format, config.log_redact, config.degraded_load) == ("text", False, 0.9)
    assert config.drain_grace == 5.0 and config.call_records == f"{tmp_path}/calls.jsonl"


def test_secrets_lists_every_configured_credential(tmp_path):
    path = tmp_path / "sipbridge.toml"
    path.write_text(
        '[api]\nkeys = ["k-0123456789abcdef"]\n'
        '[providers.pbx]\ntype = "generic"\naddress = "127.0.0.1:5060"\nusername = "u"\n'
    )
    env = {"SIPBRIDGE_AGENT_TOKEN": "tok-1", "SIPBRIDGE_PROVIDER_PBX_PASSWORD": "pw-1"}
    assert set(load_config(path, env=env).secrets) == {"k-0123456789abcdef", "tok-1", "pw-1"}


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
def test_bad_connection_values_name_the_setting(name, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config(env={f"SIPBRIDGE_{name}": value})


def test_default_accepts_the_sdp_address_or_the_signalling_ip():
    assert load_config(env={}).rtp_latch == "sdp-or-signalling"


@pytest.mark.parametrize("value", ["sdp-or-signalling", "sdp", "ANY"])
def test_documented_values(value):
    assert load_config(env={"SIPBRIDGE_RTP_LATCH": value}).rtp_latch == value.lower()


def test_bad_value_names_the_setting():
    with pytest.raises(ConfigError, match="rtp_latch.*expected one of"):
        load_config(env={"SIPBRIDGE_RTP_LATCH": "first"})


def test_a_provider_address_remembers_whether_it_named_a_port(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(PROVIDERS_TOML)
    asterisk, twilio = load_config(path, env={}).providers
    assert asterisk.address.port_given and asterisk.transport_set
    assert not twilio.address.port_given and twilio.transport_set
    path.write_text('[providers.t]\ntype = "generic"\naddress = "trunk.test"\n')
    (trunk,) = load_config(path, env={}).providers
    assert trunk.address == HostPort("trunk.test", 5060) and not trunk.address.port_given
    assert trunk.transport == "udp" and not trunk.transport_set


def test_dns_servers(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('dns_servers = ["127.0.0.1:5353", "::1", "[::1]:53", "10.0.0.2"]\n')
    servers = load_config(path, env={}).dns_servers
    assert [(s.host, s.port) for s in servers] == [
        ("127.0.0.1", 5353),
        ("::1", 53),
        ("::1", 53),
        ("10.0.0.2", 53),
    ]
    assert load_config(env={"SIPBRIDGE_DNS_SERVERS": "127.0.0.2"}).dns_servers == (HostPort("127.0.0.2", 53),)
    path.write_text('dns_servers = ["ns.test"]\n')
    with pytest.raises(ConfigError, match="dns_servers"):
        load_config(path, env={})
