"""Value objects shared by the ingest path, the rules engine and the dispatcher."""

from __future__ import annotations

import dataclasses
from datetime import datetime

# Metrics a gateway may send (spec section 1) and their units.
METRICS = {
    "water_level": "m",
    "rainfall": "mm",
    "rain_tips": "count",
    "battery": "V",
    "signal": "dBm",
}

# rain_tips never reaches storage: it is turned into rainfall increments on ingest.
STORED_METRICS = ("water_level", "rainfall", "battery", "signal")

# Alert kinds (spec sections 3, 11, 12 and 17); offline, battery, siren and sensor (data quality) are for
# staff only; upstream is a wave announced from a station upstream (banjir kiriman).
ALERT_KINDS = ("water_level", "rainfall", "upstream", "offline", "battery", "siren", "sensor")
# The kinds a station's own gauges warn residents of (texts with reminders, episodes BPBD reports).
GAUGE_ALERT_KINDS = ("water_level", "rainfall")
# The kinds residents are warned of (texts, CAP, the public dashboard): defined here only.
PUBLIC_ALERT_KINDS = GAUGE_ALERT_KINDS + ("upstream",)


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """One measured value of one metric at one station, at measurement time ``ts`` (UTC)."""

    station_id: str
    metric: str
    ts: datetime
    value: float


@dataclasses.dataclass(frozen=True, slots=True)
class Rejection:
    """Why a sample or a whole payload was refused; becomes a dead letter."""

    reason: str
    detail: str = ""
    metric: str | None = None
    ts: str | None = None
    index: int | None = None  # the sample's position in its payload; None for the payload as a whole
