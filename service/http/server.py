"""The HTTP server of ``ews run``: waitress serving the app in a background thread."""

from __future__ import annotations

import logging
import threading

from flask import Flask

log = logging.getLogger("ews")


class HttpServer:
    """Serves ``app`` on ``host:port`` from ``start()`` until ``stop()``."""

    def __init__(self, app: Flask, host: str, port: int) -> None:
        self.app, self.host, self.port = app, host, port
        self._server = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def start(self) -> None:
        """Listen, and serve in a thread."""
        from waitress import create_server

        self._server = create_server(self.app, host=self.host, port=self.port, threads=16, channel_timeout=30,
                                     connection_limit=500, ident="ews")
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)
        self._thread.start()
        log.info("HTTP API and dashboard on http://%s:%s/", self.host, self._server.effective_port)

    def stop(self) -> None:
        """Stop taking requests."""
        self._stopped.set()
        if self._server is not None:
            self._server.close()

    def _serve(self) -> None:
        try:
            self._server.run()
        except Exception:  # waitress raises on close from another thread on some platforms
            if not self._stopped.is_set():
                log.exception("HTTP server stopped unexpectedly")
