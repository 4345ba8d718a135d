"""config/mosquitto.conf and compose.yaml: anonymous access off, the generated ACL and a password file in use,
no session take-over, payloads bounded, and no default passwords (spec section 9, issue 12)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PATHS = {"persistence_location", "password_file", "acl_file", "log_dest"}  # differ between the two on purpose
REQUIRED = {"allow_anonymous": "false", "use_username_as_clientid": "true", "message_size_limit": "262144",
            "max_packet_size": "263168", "persistence": "true"}


def settings(text: str) -> dict[str, str]:
    pairs = (line.split(None, 1) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    return {key: value.strip() for key, value in (p if len(p) == 2 else (p[0], "") for p in pairs) if key != "log_type"}


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_the_production_broker_config_enforces_the_registry():
    conf = settings((ROOT / "config" / "mosquitto.conf").read_text())
    assert {k: conf.get(k) for k in REQUIRED} == REQUIRED
    assert conf["password_file"] and conf["acl_file"]


def test_compose_runs_the_same_broker_settings():
    production = settings((ROOT / "config" / "mosquitto.conf").read_text())
    composed = settings(compose()["configs"]["mosquitto-conf"]["content"])
    assert {k: v for k, v in composed.items() if k not in PATHS} == {k: v for k, v in production.items() if k not in PATHS}
    assert composed["acl_file"] == "/mosquitto/auth/acl" and composed["password_file"] == "/mosquitto/auth/passwd"


def test_compose_has_no_default_passwords():
    text = (ROOT / "compose.yaml").read_text()
    secrets = re.findall(r"\$\{([A-Z_]*(?:PASSWORD|SECRET)[A-Z_]*)(:?[-?])?", text)
    assert secrets and all(mode == ":?" for _, mode in secrets), secrets


def test_each_instance_is_its_own_broker_user_and_the_acl_names_them_all():
    services = compose()["services"]
    instances = {name: svc for name, svc in services.items() if name.startswith("ews-")}
    users = set()
    for name, svc in instances.items():
        env = svc["environment"]
        user = re.match(r"mqtt://([^:@/]+):", env["EWS_MQTT_URL"]).group(1)
        assert env["EWS_MQTT_CLIENT_ID"] == user == name  # with use_username_as_clientid the session is the user's
        users.add(user)
    acl_command = " ".join(services["broker-acl"]["entrypoint"])
    assert users == set(re.findall(r"--service-user (\S+)", acl_command))
    passwd_command = " ".join(services["mosquitto-passwd"]["entrypoint"])
    # Each instance's backlog session (spec section 16) is a broker user of its own, <user>-backlog.
    assert users | {f"{user}-backlog" for user in users} == set(
        re.findall(r"mosquitto_passwd -b /mosquitto/auth/passwd (\S+)", passwd_command))
    assert not re.search(r"mosquitto_passwd[^&]* -c ", passwd_command)  # never recreate it: the gateways are in it
    assert services["mosquitto"]["depends_on"]["broker-acl"]["condition"] == "service_completed_successfully"
