"""SMS provider settings that read the filesystem: EWS_GAMMU_SPOOL is checked at start, with a one-line error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def spool(tmp_path, folders=("inbox", "outbox", "sent", "error")) -> Path:
    for name in folders:
        (tmp_path / "spool" / name).mkdir(parents=True)
    return tmp_path / "spool"


def test_a_complete_spool_and_failover_settings_are_read(tmp_path):
    env = {"EWS_SMS_PROVIDER": "twilio, gammu", "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t",
           "TWILIO_FROM_NUMBER": "BPBDLUTIM", "EWS_GAMMU_SPOOL": str(spool(tmp_path)), "EWS_SMS_FAILOVER_S": "30",
           "EWS_GAMMU_OUTBOX_FORMAT": "standard", "EWS_GAMMU_OUTBOX_MAX": "25"}
    settings = load_settings(env)
    assert settings.sms_providers == ("twilio", "gammu") and settings.sms_failover_s == 30
    assert (settings.gammu_outbox_format, settings.gammu_outbox_max) == ("standard", 25)
    assert load_settings({}).sms_failover_s == 60  # the spec's default


@pytest.mark.parametrize("env, message", [
    ({"EWS_SMS_PROVIDER": "gammu"}, "EWS_GAMMU_SPOOL: is required"),
    ({"EWS_SMS_PROVIDER": "gammu", "EWS_GAMMU_SPOOL": "/nonexistent/spool"}, "has no inbox/, outbox/, sent/, error/"),
    ({"EWS_SMS_PROVIDER": "gammu,gammu"}, "names a provider twice"),
    ({"EWS_SMS_PROVIDER": "console,gammu"}, "cannot be part of a failover"),
    ({"EWS_SMS_PROVIDER": "twilio,modem"}, "'modem' is not a provider"),
    ({"EWS_SMS_PROVIDER": "gammu", "EWS_GAMMU_OUTBOX_FORMAT": "unicode"}, "EWS_GAMMU_OUTBOX_FORMAT"),
    ({"EWS_SMS_FAILOVER_S": "0"}, "EWS_SMS_FAILOVER_S"),
    ({"EWS_SMS_PROVIDER": "twilio,gammu"}, "TWILIO_ACCOUNT_SID: is required when EWS_SMS_PROVIDER names twilio"),
])
def test_wrong_sms_settings_say_which_and_how_to_fix(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        load_settings(env)
    assert "\n" not in str(caught.value) and ";" in str(caught.value)


def test_a_spool_missing_a_folder_names_it(tmp_path):
    with pytest.raises(ConfigError, match=r"has no sent/; point it at the folder holding gammu-smsd's"):
        load_settings({"EWS_SMS_PROVIDER": "gammu", "EWS_GAMMU_SPOOL": str(spool(tmp_path, ("inbox", "outbox", "error")))})


def test_ews_run_stops_with_one_line_for_a_wrong_spool(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EWS_", "TWILIO_"))}
    env.update({"EWS_SMS_PROVIDER": "gammu", "EWS_GAMMU_SPOOL": str(tmp_path / "nowhere"),
                "EWS_DATABASE_URL": f"sqlite:///{tmp_path / 'ews.db'}"})
    result = subprocess.run([sys.executable, "-m", "service.cli", "run"], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "EWS_GAMMU_SPOOL" in lines[0] and "nowhere" in lines[0]
