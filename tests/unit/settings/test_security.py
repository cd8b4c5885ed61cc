"""Start-up warnings for settings that work but leave a door open."""

import os

from sipbridge.config import load_config
from sipbridge.settings.security import security_warnings

SECRET_FILE = 'agent_token = "tok-0123456789abcdef"\n'


def test_a_config_file_with_secrets_readable_by_others_is_warned_about(tmp_path):
    path = tmp_path / "sipbridge.toml"
    path.write_text(SECRET_FILE)
    os.chmod(path, 0o644)
    config = load_config(path, env={})
    (warning,) = security_warnings(config, path)
    assert "readable by other users" in warning and "644" in warning
    assert "tok-0123456789abcdef" not in warning
    os.chmod(path, 0o600)
    assert security_warnings(config, path) == []


def test_a_readable_config_file_without_secrets_is_fine(tmp_path):
    path = tmp_path / "sipbridge.toml"
    path.write_text('rtp_ports = "10000-10100"\n')
    os.chmod(path, 0o644)
    env = {"SIPBRIDGE_AGENT_TOKEN": "tok-from-the-environment"}  # the secret is not in the file
    assert security_warnings(load_config(path, env=env), path) == []


def test_tls_verify_off_is_warned_about():
    config = load_config(None, env={"SIPBRIDGE_TLS_VERIFY": "false"})
    (warning,) = security_warnings(config, None)
    assert "tls_verify = false" in warning
    assert security_warnings(load_config(None, env={}), None) == []
