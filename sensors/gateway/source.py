"""Where the gateway's samples come from (serial, csv, cmd, stdin); each is stored in the queue as it arrives."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sensors.gateway.lines import LineError, parse_line, sample_from_fields
from sensors.gateway.queue import Queue

log = logging.getLogger("ews.gateway")

READ_CHUNK_LINES = 500  # lines of a file committed in one transaction


@dataclasses.dataclass(eq=False)
class Source:
    """Where samples come from; ``run`` feeds the queue until the source ends or ``stop`` is set."""

    spec: str
    station: str
    queue: Queue
    stop: threading.Event
    follow: bool = False
    baud: int = 9600
    on_stored: Callable[[], object] = lambda: None

    def __post_init__(self) -> None:
        self.finished = threading.Event()
        self.bad_lines = 0
        self.stored = 0

    def run(self) -> None:
        """Read the source (in the reader thread)."""
        try:
            kind, _, target = self.spec.partition(":")
            if kind == "csv":
                self._run_csv(Path(target))
            elif kind == "cmd":
                self._run_stream(self._command_lines(target))
            elif kind == "serial":
                self._run_stream(self._serial_lines(target))
            elif self.spec in ("stdin", "-"):
                self._run_stream(iter(sys.stdin.readline, ""))
            else:
                raise ValueError(f"unknown source {self.spec!r}")
        except Exception:
            log.exception("source %s failed", self.spec)
        finally:
            self.finished.set()
            self.on_stored()

    def _store(self, samples, position=None) -> None:
        if samples or position is not None:
            self.queue.add(samples, position)
            self.stored += len(samples)
            self.on_stored()

    def _parse(self, line: str):
        try:
            return parse_line(line, self.station)
        except LineError as exc:
            self.bad_lines += 1
            log.warning("skipped a bad line (%s): %.120r", exc, line)
            return None

    def _run_stream(self, lines: Iterator[str]) -> None:
        # A live stream cannot be re-read: commit every line as soon as it arrives.
        for line in lines:
            if self.stop.is_set():
                return
            parsed = self._parse(line)
            if parsed:
                self._store([parsed])

    def _command_lines(self, command: str) -> Iterator[str]:
        process = subprocess.Popen(command, shell=True, stdout=subprocess.PIPE, text=True, bufsize=1)
        try:
            yield from process.stdout
        finally:
            with contextlib.suppress(Exception):
                process.terminate()
                process.wait(5)

    def _serial_lines(self, device: str) -> Iterator[str]:
        try:
            import serial  # pyserial, optional
        except ImportError:
            serial = None
        if serial is None:
            # Without pyserial: read the device as a file; set it up first with
            # `stty -F /dev/ttyUSB0 9600 raw -echo` (docs/field.md).
            with open(device, encoding="ascii", errors="replace") as port:
                yield from port
            return
        with serial.Serial(device, self.baud, timeout=1) as port:
            while not self.stop.is_set():
                raw = port.readline()
                if raw:
                    yield raw.decode("ascii", errors="replace")

    def _run_csv(self, path: Path) -> None:
        """Read a CSV file from where we left off; with ``follow``, keep reading what is appended."""
        key = str(path.resolve())
        offset = self.queue.position(key)
        header: list[str] | None = None
        while not self.stop.is_set():
            with open(path, "rb") as handle:
                if header is None:
                    first = handle.readline()
                    if not first.endswith(b"\n"):
                        if not self.follow:
                            return
                        time.sleep(0.2)
                        continue
                    header = next(csv.reader([first.decode("utf-8-sig")]))
                    offset = max(offset, len(first))
                handle.seek(offset)
                data = handle.read(1 << 20)
            complete = data[: data.rfind(b"\n") + 1]  # only whole lines; a half-written row waits
            if not complete:
                if not self.follow:
                    return
                time.sleep(0.2)
                continue
            batch: list[tuple[str, dict[str, Any]]] = []
            consumed = 0
            for raw in complete.splitlines(keepends=True):
                consumed += len(raw)
                text = raw.decode("utf-8", errors="replace")
                if text.strip() and not text.lstrip().startswith("#"):
                    row = next(csv.reader([text]))
                    try:
                        batch.append(sample_from_fields(dict(zip(header, row)), self.station))
                    except LineError as exc:
                        self.bad_lines += 1
                        log.warning("skipped a bad CSV row (%s): %.120r", exc, text)
                if len(batch) >= READ_CHUNK_LINES:
                    self._store(batch, (key, offset + consumed))
                    batch = []
            offset += consumed
            self._store(batch, (key, offset))
