"""The webhook settings: where they come from, and a secret that stays one."""

import pytest

from sipbridge.cli import main
from sipbridge.config import load_config
from sipbridge.settings.values import ConfigError

SECRET = "whsec-3f9a0c7e21b84d56"


def test_the_url_and_secret_come_from_the_environment_and_the_secret_is_never_shown():
    env = {"SIPBRIDGE_WEBHOOK_URL": "https://hooks.example.com/sip", "SIPBRIDGE_WEBHOOK_SECRET": SECRET}
    config = load_config(None, env=env)
    assert config.webhook_url == "https://hooks.example.com/sip" and config.webhook_secret == SECRET
    assert SECRET not in repr(config)
    assert SECRET in config.secrets  # so the logs redact it wherever it would appear


def test_by_default_no_webhooks():
    config = load_config(None, env={})
    assert config.webhook_url is None and config.webhook_secret is None


@pytest.mark.parametrize("bad", ["changeme", "aaaaaaaaaaaaaaaaaaaa", "has blanks in it 0123456789"])
def test_a_placeholder_secret_is_refused_without_being_shown(bad):
    with pytest.raises(ConfigError) as refused:
        load_config(None, env={"SIPBRIDGE_WEBHOOK_SECRET": bad})
    assert "webhook_secret" in str(refused.value) and bad not in str(refused.value)


def test_the_url_must_be_http_or_https():
    with pytest.raises(ConfigError, match="webhook_url"):
        load_config(None, env={"SIPBRIDGE_WEBHOOK_URL": "ftp://hooks.example.com"})


def test_the_secret_has_no_flag(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "--webhook-secret" not in capsys.readouterr().out  # a flag would show it to anyone running ps
