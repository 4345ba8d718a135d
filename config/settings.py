"""Typed settings from ``EWS_*`` environment variables (spec section 7).

``load_settings(environ)`` takes the environment as a mapping so tests never
touch ``os.environ``. A wrong or missing setting raises ``ConfigError`` whose
message is one line naming the variable and how to fix it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alerts.cap import DEFAULT_EXPIRES_S, DEFAULT_SENDER, MIN_EXPIRES_S
from alerts.errors import ConfigError

SMS_PROVIDERS = ("console", "twilio", "gammu")
GAMMU_FOLDERS = ("inbox", "outbox", "sent", "error")  # the daemon's inboxpath, outboxpath, sentsmspath, errorsmspath
SEEDS = ("luwu-timur",)
TOPIC_PREFIX_RE = re.compile(r"^[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")


@dataclasses.dataclass(frozen=True)
class MqttUrl:
    """Where the broker is: parsed from ``EWS_MQTT_URL``."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    database_url: str = "sqlite:///ews.db"
    mqtt: MqttUrl | None = None  # None: start the embedded broker
    mqtt_topic_prefix: str = "ews/v1"
    mqtt_client_id: str = "ews-ingest"
    embedded_mqtt_port: int = 1883
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    sms_provider: str = "console"  # one provider, or several in failover order: "twilio,gammu"
    sms_failover_s: float = 60.0  # how long the first provider may refuse before the next takes over
    gammu_spool: str | None = None  # holds gammu-smsd's inbox/, outbox/, sent/ and error/
    gammu_outbox_format: str = "detail"  # detail (.smsbackup) or standard (.txt)
    gammu_outbox_max: int = 10  # our files waiting in the daemon's outbox at most (the rest wait in order here)
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    twilio_api_base_url: str | None = None
    sms_max_per_second: float = 10.0
    sms_validity_s: int = 3600  # a warning not handed to the provider within it is expired (Twilio ValidityPeriod)
    timezone: str = "Asia/Makassar"
    seed: str | None = None
    log_level: str = "INFO"
    exercise: bool = False  # mark every alert as an exercise (drills, simulations)
    mqtt_shared_group: str | None = None  # None: automatic (see service.bootstrap.shared_subscription_group); "none": off
    leader_lease_s: float = 15.0  # how long the scheduler lease lasts without renewal
    cap_sender: str = DEFAULT_SENDER  # CAP <sender>
    cap_oid: str | None = None  # the WMO register OID of BPBD as an alerting authority
    cap_expires_s: int = DEFAULT_EXPIRES_S  # a CAP message's validity; renewed before it runs out
    dead_letter_max_mb: int = 512  # the dead-letter table's cap; past it the oldest go first
    siren_ack_timeout_s: float = 30.0  # a siren command unanswered this long is published again (spec section 12)

    @property
    def tz(self) -> ZoneInfo:
        """The time zone people read times in (WITA by default)."""
        return ZoneInfo(self.timezone)

    @property
    def sms_providers(self) -> tuple[str, ...]:
        """The SMS providers in failover order (``EWS_SMS_PROVIDER=twilio,gammu``)."""
        return tuple(self.sms_provider.split(","))

    @property
    def is_sqlite(self) -> bool:
        """True when the database is a SQLite file."""
        return self.database_url.startswith("sqlite")


def _fail(variable: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{variable}: {problem}; {fix}")


def _read_config_file(path: str) -> dict[str, str]:
    """Read ``EWS_CONFIG``: a TOML file or ``KEY=value`` lines with the same keys as the environment."""
    file = Path(path)
    if not file.is_file():
        raise _fail("EWS_CONFIG", f"no file at {path!r}", "point it at an existing .toml or .env file, or unset it")
    text = file.read_text(encoding="utf-8")
    if file.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise _fail("EWS_CONFIG", f"{path} is not valid TOML ({exc})", "fix the syntax") from None
        return {str(k).upper(): str(v) for k, v in data.items()}
    values = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise _fail("EWS_CONFIG", f"{path} line {number} has no '='", "write KEY=value, one per line")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def _merged(environ: Mapping[str, str]) -> dict[str, str]:
    """The config file's keys, overridden by the real environment."""
    values: dict[str, str] = {}
    if environ.get("EWS_CONFIG"):
        values.update(_read_config_file(environ["EWS_CONFIG"]))
    values.update({k: v for k, v in environ.items() if k.startswith(("EWS_", "TWILIO_"))})
    return {k: v for k, v in values.items() if v != ""}


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """A whole-number setting within ``low..high`` (``default`` when unset)."""
    return _number(env, name, default, low, high, int, "a whole number")


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    """A number setting within ``low..high`` (``default`` when unset)."""
    return _number(env, name, default, low, high, float, "a number")


def _number(env: Mapping[str, str], name: str, default, low, high, parse, what: str):
    raw = env.get(name)
    if raw is None:
        return default
    show = str if parse is int else "{:g}".format  # 1000000 stays 1000000; 0.10 reads 0.1
    try:
        value = parse(raw)
    except ValueError:
        raise _fail(name, f"{raw!r} is not {what}", f"set a number from {show(low)} to {show(high)}") from None
    if not low <= value <= high:
        raise _fail(name, f"{show(value)} is out of range", f"set a number from {show(low)} to {show(high)}")
    return value


def parse_mqtt_url(raw: str) -> MqttUrl:
    """Parse ``mqtt://user:pass@host:1883`` or ``mqtts://…`` into an ``MqttUrl``."""
    parts = urlsplit(raw)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise _fail(
            "EWS_MQTT_URL",
            f"{raw!r} is not an MQTT URL",
            "use mqtt://user:pass@host:1883 or mqtts://host:8883, or unset it for the embedded broker",
        )
    try:
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    except ValueError:
        raise _fail("EWS_MQTT_URL", f"{raw!r} has a bad port", "use a port from 1 to 65535") from None
    return MqttUrl(
        host=parts.hostname,
        port=port,
        tls=parts.scheme == "mqtts",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _database_url(env: Mapping[str, str]) -> str:
    url = env.get("EWS_DATABASE_URL", "sqlite:///ews.db")
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        raise _fail(
            "EWS_DATABASE_URL",
            "a PostgreSQL URL needs the driver named",
            "write postgresql+psycopg://user@host/db",
        )
    if not (url.startswith("sqlite:///") or url.startswith("postgresql+psycopg://") or url == "sqlite://"):
        raise _fail(
            "EWS_DATABASE_URL",
            f"unsupported database URL {url.split('://')[0]!r}",
            "use sqlite:///path/to/ews.db or postgresql+psycopg://user:pass@host:5432/db",
        )
    return url


def _twilio(env: Mapping[str, str], providers: tuple[str, ...]) -> dict[str, str | None]:
    keys = {
        "twilio_account_sid": env.get("TWILIO_ACCOUNT_SID"),
        "twilio_auth_token": env.get("TWILIO_AUTH_TOKEN"),
        "twilio_from_number": env.get("TWILIO_FROM_NUMBER"),
        "twilio_messaging_service_sid": env.get("TWILIO_MESSAGING_SERVICE_SID"),
        "twilio_api_base_url": env.get("TWILIO_API_BASE_URL"),
    }
    if "twilio" not in providers:
        return keys
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        if not env.get(name):
            raise _fail(name, "is required when EWS_SMS_PROVIDER names twilio", "copy it from the Twilio console")
    if not (keys["twilio_from_number"] or keys["twilio_messaging_service_sid"]):
        raise _fail(
            "TWILIO_FROM_NUMBER",
            "neither it nor TWILIO_MESSAGING_SERVICE_SID is set",
            "set the registered sender (e.g. BPBDLUTIM) or a Messaging Service SID",
        )
    base = keys["twilio_api_base_url"]
    if base and not re.match(r"^https?://[^/]+", base):
        raise _fail("TWILIO_API_BASE_URL", f"{base!r} is not an http(s) URL", "use e.g. http://127.0.0.1:4010")
    return keys


def _sms_providers(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("EWS_SMS_PROVIDER", "console").lower()
    names = tuple(name.strip() for name in raw.split(","))
    for name in names:
        if name not in SMS_PROVIDERS:
            raise _fail("EWS_SMS_PROVIDER", f"{name!r} is not a provider",
                        f"use one of {', '.join(SMS_PROVIDERS)}, or several in failover order (twilio,gammu)")
    if len(set(names)) != len(names):
        raise _fail("EWS_SMS_PROVIDER", f"{raw!r} names a provider twice", "name each provider once (twilio,gammu)")
    if "console" in names and len(names) > 1:
        raise _fail("EWS_SMS_PROVIDER", "console only prints, it cannot be part of a failover",
                    "use console alone, or real providers (twilio,gammu)")
    return names


def _gammu(env: Mapping[str, str], providers: tuple[str, ...]) -> dict:
    fmt = env.get("EWS_GAMMU_OUTBOX_FORMAT", "detail").lower()
    if fmt not in ("detail", "standard"):
        raise _fail("EWS_GAMMU_OUTBOX_FORMAT", f"{fmt!r} is not a format", "use detail (.smsbackup) or standard (.txt)")
    values = {"gammu_spool": env.get("EWS_GAMMU_SPOOL"), "gammu_outbox_format": fmt,
              "gammu_outbox_max": _int(env, "EWS_GAMMU_OUTBOX_MAX", 10, 1, 10000)}
    if "gammu" in providers:
        values["gammu_spool"] = _gammu_spool(values["gammu_spool"])
    return values


def _gammu_spool(raw: str | None) -> str:
    """The spool folder, checked: its four folders exist and we may write where we must."""
    fix = "point it at the folder holding gammu-smsd's inbox/, outbox/, sent/ and error/ (docs/sms.md)"
    if not raw:
        raise _fail("EWS_GAMMU_SPOOL", "is required with EWS_SMS_PROVIDER=gammu", fix)
    root = Path(raw)
    missing = [name for name in GAMMU_FOLDERS if not (root / name).is_dir()]
    if missing:
        raise _fail("EWS_GAMMU_SPOOL", f"{raw!r} has no {', '.join(f'{m}/' for m in missing)}", fix)
    for name in ("outbox", "inbox"):  # we write messages into outbox/, and move handled ones out of inbox/
        if not os.access(root / name, os.W_OK | os.X_OK):
            raise _fail("EWS_GAMMU_SPOOL", f"{root / name} is not writable by this user",
                        "add the service's user to the spool's group and make the folders group-writable (docs/sms.md)")
    return str(root.resolve())


def _shared_group(env: Mapping[str, str]) -> str | None:
    raw = env.get("EWS_MQTT_SHARED_GROUP", "").strip()
    if raw and (not re.match(r"^[A-Za-z0-9_\-]{1,64}$", raw)):
        raise _fail("EWS_MQTT_SHARED_GROUP", f"{raw!r} is not a group name", "use letters, digits, '-' or '_', or none")
    return raw or None


def _cap(env: Mapping[str, str]) -> dict:
    """The CAP issuer's settings (spec section 15)."""
    sender = env.get("EWS_CAP_SENDER", DEFAULT_SENDER)
    if not re.match(r"^[^\s,<>&\"']{1,200}$", sender):
        raise _fail("EWS_CAP_SENDER", f"{sender!r} cannot be a CAP sender (no spaces, commas, <, >, & or quotes)",
                    "use an address such as bpbd@luwutimurkab.go.id")
    oid = env.get("EWS_CAP_OID")
    if oid is not None and not re.match(r"^[0-2](\.(0|[1-9][0-9]*)){2,}$", oid):
        raise _fail("EWS_CAP_OID", f"{oid!r} is not an OID",
                    "use the dotted numbers the WMO register gave BPBD (e.g. 2.49.0.1.360.1), or unset it")
    return {"cap_sender": sender, "cap_oid": oid,
            "cap_expires_s": _int(env, "EWS_CAP_EXPIRES_S", DEFAULT_EXPIRES_S, MIN_EXPIRES_S, 7 * 86400)}


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build ``Settings`` from an environment mapping; raise ``ConfigError`` on the first bad value."""
    env = _merged(environ)
    providers = _sms_providers(env)
    prefix = env.get("EWS_MQTT_TOPIC_PREFIX", "ews/v1").strip("/")
    if not TOPIC_PREFIX_RE.match(prefix):
        raise _fail("EWS_MQTT_TOPIC_PREFIX", f"{prefix!r} has characters MQTT topics cannot use here",
                    "use letters, digits, '-', '_' and '/' (e.g. ews/v1)")
    timezone_name = env.get("EWS_TIMEZONE", "Asia/Makassar")
    try:
        ZoneInfo(timezone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _fail("EWS_TIMEZONE", f"{timezone_name!r} is not a known time zone", "use e.g. Asia/Makassar") from None
    seed = env.get("EWS_SEED")
    if seed is not None and seed not in SEEDS:
        raise _fail("EWS_SEED", f"{seed!r} is not a bundled seed", f"use {', '.join(SEEDS)} or unset it")
    host = env.get("EWS_HTTP_HOST", "127.0.0.1")
    port = _int(env, "EWS_HTTP_PORT", 8080, 1, 65535)
    public_url = env.get("EWS_PUBLIC_URL", f"http://{host}:{port}").rstrip("/")
    if not re.match(r"^https?://[^/]+", public_url):
        raise _fail("EWS_PUBLIC_URL", f"{public_url!r} is not an http(s) URL", "use e.g. https://ews.luwutimurkab.go.id")
    client_id = env.get("EWS_MQTT_CLIENT_ID", "ews-ingest")
    if not re.match(r"^[A-Za-z0-9_\-]{1,64}$", client_id):
        raise _fail("EWS_MQTT_CLIENT_ID", f"{client_id!r} is not a valid client id", "use 1-64 letters, digits, '-' or '_'")
    level = env.get("EWS_LOG_LEVEL", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise _fail("EWS_LOG_LEVEL", f"{level!r} is not a log level", "use DEBUG, INFO, WARNING or ERROR")
    return Settings(
        database_url=_database_url(env),
        mqtt=parse_mqtt_url(env["EWS_MQTT_URL"]) if env.get("EWS_MQTT_URL") else None,
        mqtt_topic_prefix=prefix,
        mqtt_client_id=client_id,
        embedded_mqtt_port=_int(env, "EWS_EMBEDDED_MQTT_PORT", 1883, 1, 65535),
        http_host=host,
        http_port=port,
        public_url=public_url,
        sms_provider=",".join(providers),
        sms_failover_s=_float(env, "EWS_SMS_FAILOVER_S", 60.0, 1.0, 86400.0),
        sms_max_per_second=_float(env, "EWS_SMS_MAX_PER_SECOND", 10.0, 0.1, 1000.0),
        # Twilio takes a ValidityPeriod of 1 to 36,000 s; under a minute a busy provider would expire warnings.
        sms_validity_s=_int(env, "EWS_SMS_VALIDITY_S", 3600, 60, 36000),
        timezone=timezone_name,
        seed=seed,
        log_level=level,
        exercise=env.get("EWS_EXERCISE", "").lower() in ("1", "true", "yes"),
        mqtt_shared_group=_shared_group(env),
        leader_lease_s=_float(env, "EWS_LEADER_LEASE_S", 15.0, 3.0, 600.0),
        **_cap(env),
        dead_letter_max_mb=_int(env, "EWS_DEAD_LETTER_MAX_MB", 512, 1, 1_000_000),
        siren_ack_timeout_s=_float(env, "EWS_SIREN_ACK_TIMEOUT_S", 30.0, 0.2, 3600.0),
        **_twilio(env, providers),
        **_gammu(env, providers),
    )
