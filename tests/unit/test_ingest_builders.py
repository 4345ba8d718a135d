"""The ingest's quick builders make the very objects the dataclasses' own constructors make."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest

from alerts.model import Sample
from sensors.payload import _sample
from service.ingest_messages import Message, mqtt_reading

AT = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)


def test_a_quick_sample_is_the_sample_its_constructor_makes():
    quick, made = _sample("PKR-LASKAP", "water_level", AT, 2.43), Sample("PKR-LASKAP", "water_level", AT, 2.43)
    assert type(quick) is Sample and quick == made and hash(quick) == hash(made) and repr(quick) == repr(made)
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick.value = 9.0


def test_an_mqtt_reading_is_the_message_its_constructor_makes():
    quick, made = mqtt_reading("ews/v1/stations/PKR-LASKAP/readings", b"{}", AT), \
        Message("ews/v1/stations/PKR-LASKAP/readings", b"{}", AT)
    assert type(quick) is Message and quick == made and hash(quick) == hash(made)
    assert list(vars(quick).items()) == list(vars(made).items())  # every field, defaults too, in order
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick.source = "http"
