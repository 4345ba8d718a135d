"""Settings: defaults that run on a laptop, and one-line errors that say how to fix a wrong value."""

from __future__ import annotations

import pytest

from config.settings import ConfigError, load_settings


def test_defaults_run_with_nothing_set():
    settings = load_settings({})
    assert settings.database_url == "sqlite:///ews.db"
    assert settings.mqtt is None  # the embedded broker
    assert settings.mqtt_topic_prefix == "ews/v1"
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8080)
    assert settings.public_url == "http://127.0.0.1:8080"
    assert settings.sms_provider == "console" and settings.sms_max_per_second == 10
    assert settings.timezone == "Asia/Makassar" and settings.seed is None


def test_mqtt_url_with_credentials_and_tls():
    settings = load_settings({"EWS_MQTT_URL": "mqtts://svc:p%40ss@broker.lutim:8883"})
    assert (settings.mqtt.host, settings.mqtt.port, settings.mqtt.tls) == ("broker.lutim", 8883, True)
    assert (settings.mqtt.username, settings.mqtt.password) == ("svc", "p@ss")


def test_public_url_follows_host_and_port():
    assert load_settings({"EWS_HTTP_HOST": "0.0.0.0", "EWS_HTTP_PORT": "9000"}).public_url == "http://0.0.0.0:9000"


def test_twilio_settings_are_read_when_chosen():
    env = {"EWS_SMS_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t",
           "TWILIO_MESSAGING_SERVICE_SID": "MG1", "TWILIO_API_BASE_URL": "http://127.0.0.1:4010"}
    settings = load_settings(env)
    assert settings.twilio_messaging_service_sid == "MG1" and settings.twilio_api_base_url == "http://127.0.0.1:4010"


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"EWS_HTTP_PORT": "eighty"}, "EWS_HTTP_PORT"),
        ({"EWS_HTTP_PORT": "70000"}, "EWS_HTTP_PORT"),
        ({"EWS_SMS_PROVIDER": "pigeon"}, "EWS_SMS_PROVIDER"),
        ({"EWS_SMS_PROVIDER": "twilio"}, "TWILIO_ACCOUNT_SID"),
        ({"EWS_SMS_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": "AC", "TWILIO_AUTH_TOKEN": "x"}, "TWILIO_FROM_NUMBER"),
        ({"EWS_MQTT_URL": "tcp://broker"}, "EWS_MQTT_URL"),
        ({"EWS_MQTT_URL": "mqtt://broker:99999"}, "EWS_MQTT_URL"),
        ({"EWS_DATABASE_URL": "postgresql://db/ews"}, "EWS_DATABASE_URL"),
        ({"EWS_DATABASE_URL": "mysql://db/ews"}, "EWS_DATABASE_URL"),
        ({"EWS_TIMEZONE": "Mars/Olympus"}, "EWS_TIMEZONE"),
        ({"EWS_SEED": "jakarta"}, "EWS_SEED"),
        ({"EWS_SMS_MAX_PER_SECOND": "0"}, "EWS_SMS_MAX_PER_SECOND"),
        ({"EWS_MQTT_TOPIC_PREFIX": "ews/#"}, "EWS_MQTT_TOPIC_PREFIX"),
        ({"EWS_PUBLIC_URL": "ews.lutim"}, "EWS_PUBLIC_URL"),
        ({"EWS_CONFIG": "/nonexistent/ews.toml"}, "EWS_CONFIG"),
        ({"EWS_CAP_EXPIRES_S": "59"}, "EWS_CAP_EXPIRES_S"),
        ({"EWS_CAP_EXPIRES_S": "6h"}, "EWS_CAP_EXPIRES_S"),
        ({"EWS_CAP_OID": "2.49.0.1.360.x"}, "EWS_CAP_OID"),
        ({"EWS_CAP_SENDER": "BPBD Luwu Timur"}, "EWS_CAP_SENDER"),
    ],
)
def test_a_wrong_setting_is_one_line_naming_it_and_the_fix(env, variable):
    with pytest.raises(ConfigError) as error:
        load_settings(env)
    message = str(error.value)
    assert message.startswith(f"{variable}: ") and "\n" not in message and ";" in message


def test_a_config_file_holds_the_same_keys_and_the_environment_wins(tmp_path):
    toml = tmp_path / "ews.toml"
    toml.write_text('EWS_HTTP_PORT = 9100\nEWS_SEED = "luwu-timur"\n')
    settings = load_settings({"EWS_CONFIG": str(toml), "EWS_HTTP_PORT": "9200"})
    assert settings.http_port == 9200 and settings.seed == "luwu-timur"
    env_file = tmp_path / "ews.env"
    env_file.write_text("# comment\nEWS_TIMEZONE=Asia/Jakarta\n")
    assert load_settings({"EWS_CONFIG": str(env_file)}).timezone == "Asia/Jakarta"


def test_ews_run_prints_one_line_and_exits_2_on_a_wrong_setting(monkeypatch, capsys):
    from service.cli import main

    monkeypatch.setenv("EWS_HTTP_PORT", "eighty")
    assert main(["run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("ews: EWS_HTTP_PORT")


def test_cap_settings_default_to_the_first_release_and_take_the_register_oid():
    defaults = load_settings({})
    assert (defaults.cap_sender, defaults.cap_oid, defaults.cap_expires_s) == ("bpbd@luwutimurkab.go.id", None, 21600)
    chosen = load_settings({"EWS_CAP_OID": "2.49.0.1.360.7", "EWS_CAP_EXPIRES_S": "60",
                            "EWS_CAP_SENDER": "bpbd.lutim@example.go.id"})
    assert (chosen.cap_sender, chosen.cap_oid, chosen.cap_expires_s) == ("bpbd.lutim@example.go.id", "2.49.0.1.360.7", 60)
