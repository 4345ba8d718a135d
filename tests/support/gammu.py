"""A real ``gammu-smsd`` (Debian's package) on Gammu's ``dummy`` phone driver, in a temporary folder.

The dummy phone is a folder: a file placed in its ``sms/1/`` (Gammu's SMS backup format) is a
received SMS, and the daemon's log says what it transmitted. ``.ci/run`` installs the package;
tests that need it skip with the reason when it is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from service.dispatch import gammu_files
from tests.support.infra import terminate, wait_until

GAMMU_SMSD = shutil.which("gammu-smsd") or next((p for p in ("/usr/bin/gammu-smsd",) if os.path.exists(p)), None)
SKIP_REASON = "needs Debian's gammu-smsd (apt-get install -y gammu gammu-smsd; .ci/run installs it)"
TRANSMITTED_RE = re.compile(r"Transmitted (\S+) \(total: \d+\) to (\S+),")

SMSDRC = """[gammu]
model = dummy
connection = none
device = {phone}

[smsd]
service = files
inboxpath = {spool}/inbox/
outboxpath = {spool}/outbox/
sentsmspath = {sent}/
errorsmspath = {spool}/error/
inboxformat = standard
outboxformat = detail
logfile = {log}
debuglevel = 1
commtimeout = 1
sendtimeout = 5
receivefrequency = 1
loopsleep = 1
checksecurity = 0
checkbattery = 0
checksignal = 0
"""


class GammuDaemon:
    """``gammu-smsd -c smsdrc`` in the foreground, as our child process, on a dummy phone."""

    def __init__(self, directory: Path, *, sent_path: Path | None = None, smsdrc: str | None = None) -> None:
        self.directory = Path(directory)
        self.phone = self.directory / "phone"
        self.spool = self.directory / "spool"
        self.log = self.directory / "smsd.log"
        self.config = self.directory / "smsdrc"
        self.process: subprocess.Popen | None = None
        self.phone.mkdir(parents=True, exist_ok=True)
        for folder in ("inbox", "outbox", "sent", "error"):
            (self.spool / folder).mkdir(parents=True, exist_ok=True)
        # ``sent_path``: where the daemon files what it sent (a missing folder makes it move each message to error/)
        sent = sent_path or self.spool / "sent"
        self.config.write_text(smsdrc or SMSDRC.format(phone=self.phone, spool=self.spool, sent=sent, log=self.log))
        self._received = 0

    def start(self) -> "GammuDaemon":
        """Start the daemon and wait until it talks to the phone."""
        if GAMMU_SMSD is None:
            raise RuntimeError(SKIP_REASON)
        starts = self.log_text().count("Starting phone communication")
        with open(self.directory / "smsd.out", "ab") as out:
            self.process = subprocess.Popen([GAMMU_SMSD, "-c", str(self.config)], stdout=out, stderr=subprocess.STDOUT,
                                            env={**os.environ, "LANG": "C.UTF-8"})
        wait_until(lambda: self.log_text().count("Starting phone communication") > starts or self._exited(), 30,
                   "gammu-smsd to start")
        if self._exited():
            raise RuntimeError(f"gammu-smsd exited:\n{self.log_text()[-2000:]}")
        return self

    def _exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def stop(self) -> None:
        """SIGTERM and wait (the daemon finishes the message in hand)."""
        terminate(self.process)
        self.process = None

    def __enter__(self) -> "GammuDaemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the phone ------------------------------------------------------------------------------

    def receive(self, number: str, text: str) -> None:
        """An SMS from ``number`` arrives at the modem: a backup file in the dummy phone's inbox (written atomically)."""
        self._received += 1
        folder = self.phone / "sms" / "1"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        body = (f'[SMSBackup000]\nSMSC = "+6281100000"\nState = UnRead\nNumber = "{number}"\nCoding = Default\n'
                f"Text00 = {text.encode('utf-16-be').hex().upper()}\nFolder = 1\nPDU = Deliver\nDateTime = {stamp}\n")
        location = next(i for i in range(1, 10_000) if not (folder / str(i)).exists())
        temp = self.directory / f".incoming-{uuid.uuid4().hex}"
        temp.write_text(body)
        os.replace(temp, folder / str(location))

    def transmitted(self) -> list[tuple[str, str]]:
        """(file name, number) of every message the daemon transmitted, in order."""
        return TRANSMITTED_RE.findall(self.log_text())

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    # -- the spool ------------------------------------------------------------------------------

    def files(self, folder: str) -> list[str]:
        """Names in ``spool/folder`` (hidden temporary files included), sorted."""
        path = self.spool / folder
        return sorted(entry for entry in os.listdir(path) if (path / entry).is_file())

    def message(self, folder: str, name: str) -> tuple[str | None, str]:
        """(number, text) of a message file in ``spool/folder``."""
        return gammu_files.read_outbox_content((self.spool / folder / name).read_bytes(), name)

    def wait_sent(self, count: int, timeout: float = 60.0) -> list[str]:
        """Wait until ``sent/`` holds ``count`` files; return their names."""
        return wait_until(lambda: (names := self.files("sent")) and len(names) >= count and names, timeout,
                          f"{count} messages in gammu-smsd's sent/")


def settle(seconds: float) -> None:
    """Let the daemon run a few loops (used only where the test asserts that something does *not* happen)."""
    time.sleep(seconds)
