"""``ews bench ingest``: drain a pre-queued backlog through MqttIngest + Ingestor vs. a bare paho client."""

from __future__ import annotations

import cProfile
import io
import json
import pstats
import random
import threading
import time
from datetime import timedelta
from pathlib import Path

from config.settings import load_settings, parse_mqtt_url
from service.bench.common import (PREFIX, Progress, goal_note, note, prepare_database, reading_payload, report,
                                  station_id, utc_now, verdict, workspace)
from service.bench.mqtt_clients import connected, create_session, mqtt_client, publish_all
from service.bootstrap import bootstrap
from service.heap import settle_after_startup
from service.mqtt_ingest import MqttIngest

SERVICE_CLIENT = "ews-bench-ingest"
BARE_CLIENT = "ews-bench-bare"
PEER_CLIENT = "ews-bench-peer"
PEER_THRESHOLD = 3.0  # the AWAS line of the bench stations


def backlog(count: int, stations: int, seed: int = 1, start_in: tuple[float, float] = (0.5, 1.5),
            band: tuple[float, float] = (0.1, 1.9)):
    """``count`` single-sample messages spread over ``stations``, one per station-minute, ending now; each
    station's level starts within ``start_in`` and wanders within ``band`` (m), below waspada: steady judging."""
    rng = random.Random(seed)
    per_station = -(-count // stations)
    start = utc_now().replace(microsecond=0) - timedelta(minutes=per_station + 5)
    levels = [rng.uniform(*start_in) for _ in range(stations)]
    low, high = band
    for i in range(count):
        s, minute = i % stations, i // stations
        levels[s] = min(high, max(low, levels[s] + rng.uniform(-0.02, 0.02)))
        yield f"{PREFIX}/stations/{station_id(s)}/readings", reading_payload(start + timedelta(minutes=minute),
                                                                            round(levels[s], 3), i)


def drain_service(url: str, database_url: str, count: int, quiet: bool, profile: bool) -> tuple[float, str | None]:
    """Start MqttIngest with the real Ingestor (and rules); return (seconds until ``count`` committed, profile)."""
    settings = load_settings({"EWS_DATABASE_URL": database_url, "EWS_MQTT_TOPIC_PREFIX": PREFIX})
    services = bootstrap(settings)
    committed = 0
    all_in = threading.Event()
    profiler = cProfile.Profile() if profile else None

    def ingest(messages):
        nonlocal committed
        if profiler is not None:
            profiler.enable()
        try:
            results = services.ingestor.ingest(messages)
        finally:
            if profiler is not None:
                profiler.disable()
        committed += sum(len(r.accepted) for r in results)
        if committed >= count:
            all_in.set()
        return results

    ingest_client = MqttIngest(parse_mqtt_url(url), PREFIX, SERVICE_CLIENT, ingest)
    settle_after_startup()  # as ``ews run`` does before it starts the ingest
    progress = Progress("service drain", count, quiet)
    started = time.monotonic()
    ingest_client.start()
    while not all_in.wait(0.1):
        progress.update(committed)
        if time.monotonic() - started > 1800:
            raise TimeoutError(f"only {committed} of {count} committed after 30 min")
    elapsed = time.monotonic() - started
    progress.done(committed)
    ingest_client.stop()
    services.engine.dispose()
    text = None
    if profiler is not None:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(35)
        stats.sort_stats("tottime").print_stats(25)
        text = out.getvalue()
    return elapsed, text


def drain_bare(url: str, count: int, quiet: bool) -> float:
    """A bare paho client (persistent session, QoS 1, automatic PUBACK) drains ``count``; return seconds."""
    return _drain(url, BARE_CLIENT, "bare paho drain", count, quiet, lambda message: None)


def drain_peer(url: str, count: int, quiet: bool) -> tuple[float, int]:
    """The cheapest thing that still judges: paho (automatic PUBACK), ``json.loads`` and one threshold compare
    per message. Return (seconds, messages at or above the threshold)."""
    above = 0

    def judge(message) -> None:
        nonlocal above
        if json.loads(message.payload)["values"].get("water_level", 0.0) >= PEER_THRESHOLD:
            above += 1

    return _drain(url, PEER_CLIENT, "peer drain (json + compare)", count, quiet, judge), above


def _drain(url: str, client_id: str, label: str, count: int, quiet: bool, handle) -> float:
    """Drain ``count`` messages of ``client_id``'s persistent session, calling ``handle`` on each; return seconds."""
    received = 0
    done = threading.Event()
    client = mqtt_client(url, client_id, clean=False)

    def on_message(c, u, message):
        nonlocal received
        handle(message)
        received += 1
        if received >= count:
            done.set()

    client.on_message = on_message
    progress = Progress(label, count, quiet)
    started = time.monotonic()
    with connected(client, url, keepalive=60):
        while not done.wait(0.1):
            progress.update(received)
        elapsed = time.monotonic() - started
        progress.done(received)
    return elapsed


def run(args) -> int:
    """The ingest mode."""
    count, stations, quiet = args.count, args.stations, args.quiet
    with workspace("ingest", args.database) as (tmp, database_url, broker):
        engine = prepare_database(database_url, stations)
        engine.dispose()
        topic_filter = f"{PREFIX}/stations/+/readings"
        create_session(broker.url, SERVICE_CLIENT, topic_filter)
        create_session(broker.url, BARE_CLIENT, topic_filter)
        if args.peer:
            create_session(broker.url, PEER_CLIENT, topic_filter)
        sessions = 3 if args.peer else 2
        note(f"queueing {count:,} readings from {stations} stations for {sessions} persistent sessions", quiet)
        publish_s = publish_all(broker.url, backlog(count, stations), count, Progress("publish", count, quiet))
        service_s, profile_text = drain_service(broker.url, database_url, count, quiet, args.profile)
        bare_s = drain_bare(broker.url, count, quiet)
        peer_s = drain_peer(broker.url, count, quiet)[0] if args.peer else None
    service_rate, bare_rate = count / service_s, count / bare_s
    ratio = service_rate / bare_rate
    figures = {
        "database": args.database, "readings": count, "stations": stations, "publish_s": round(publish_s, 2),
        "service_s": round(service_s, 2), "service_per_s": round(service_rate), "bare_s": round(bare_s, 2),
        "bare_per_s": round(bare_rate), "ratio": round(ratio, 3), "goal_ratio": 0.5, "goal_met": ratio >= 0.5,
    }
    rows = [
        ("database", args.database), ("readings queued", f"{count:,} from {stations} stations"),
        ("publish (QoS 1)", f"{publish_s:.1f} s ({count / publish_s:,.0f}/s)"),
        ("service drain (MqttIngest + Ingestor + rules)", f"{service_s:.1f} s = {service_rate:,.0f} readings/s"),
        ("bare paho drain (auto PUBACK)", f"{bare_s:.1f} s = {bare_rate:,.0f} messages/s"),
        ("ratio service / bare", f"{ratio:.2f} {goal_note('>= 0.5', ratio >= 0.5)}"),
    ]
    summary = (f"ingest: service {service_rate:,.0f}/s, bare paho {bare_rate:,.0f}/s, ratio {ratio:.2f} "
               f"({verdict(ratio >= 0.5)}; {args.database}, {stations} stations)")
    if peer_s is not None:
        peer_rate = count / peer_s
        figures.update(peer_s=round(peer_s, 2), peer_per_s=round(peer_rate), peer_ratio=round(service_rate / peer_rate, 3))
        rows.append(("peer: paho + json.loads + threshold compare", f"{peer_s:.1f} s = {peer_rate:,.0f} messages/s"))
        rows.append(("ratio service / peer", f"{service_rate / peer_rate:.2f}"))
        summary += f"; peer (json + compare) {peer_rate:,.0f}/s, ratio {service_rate / peer_rate:.2f}"
    report(args, "ingest", rows, figures, summary)
    if profile_text and args.profile_out:
        Path(args.profile_out).write_text(profile_text)
        note(f"profile written to {args.profile_out}", quiet)
    elif profile_text:
        print(profile_text)
    return 0
