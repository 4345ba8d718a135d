"""Answers shared by every caller of a route that holds no personal data, rebuilt only when their data changed.

A screen polls the station list every few seconds, and a control room has many screens. Building
the answer (the rows, their status, serialising them) costs tens of milliseconds; asking whether
it may have changed (a *mark*: one cheap query over versions, counts and timestamps) costs a
fraction of one. So the answer is kept, encoded and with its ETag, with the mark it was built
from; for ``check_every`` seconds it is served as it is, then the mark is asked again, and only a
different mark rebuilds it. ``commits`` (this process's commit count, see ``Commits``) has the mark
asked at once after this process committed anything: a change made here shows from the next
request on, one made by another process within ``check_every``. ``max_age`` rebuilds an answer
that old even when the mark held (times in it age). While one request checks or rebuilds, the
others get the answer in hand (at most one check old). ``clear()`` drops every answer at once.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import threading
import time
import weakref
from collections.abc import Callable, Hashable

from sqlalchemy import event

from service.http.auth import held_check_allows

MAX_ANSWERS = 256  # distinct query strings kept; more (a crawler's) start the collection afresh


@dataclasses.dataclass(frozen=True)
class Answer:
    """An encoded body and its strong ETag."""

    body: bytes
    etag: str  # quoted, as sent

    @classmethod
    def of(cls, body: bytes) -> "Answer":
        """The answer for ``body`` (its ETag: a digest of it)."""
        return cls(body, '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"')


@dataclasses.dataclass(frozen=True)
class _Held:
    answer: Answer
    mark: object
    checked_until: float  # monotonic
    commits: int  # this process's commit count when the mark was asked
    built_at: float  # monotonic


class Commits:
    """How many transactions this process committed on an engine (its ``commit`` event), read without a query.

    The event comes just before the database's commit: a request in between may ask the mark too
    early and keep the old answer, until the next check (within ``check_every``).
    """

    _of_engine: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    _made = threading.Lock()

    def __init__(self, engine) -> None:
        self.count = 0
        event.listen(engine, "commit", self._committed)

    @classmethod
    def of(cls, engine) -> "Commits":
        """The one counter of ``engine`` (made at its first use)."""
        with cls._made:
            counter = cls._of_engine.get(engine)
            if counter is None:
                counter = cls._of_engine[engine] = cls(engine)
            return counter

    def _committed(self, _conn) -> None:
        self.count += 1  # two at once may count one: the count still moved

    def __call__(self) -> int:
        return self.count


def _no_commits() -> int:
    return 0


class SharedAnswers:
    """Answers by key (a query string), each kept while the mark it was built from still holds."""

    def __init__(self, check_every: float, *, max_age: float | None = None,
                 commits: Callable[[], int] = _no_commits) -> None:
        self.check_every, self.max_age, self.commits = check_every, max_age, commits
        self._held: dict[Hashable, _Held] = {}
        self._lock = threading.Lock()  # one check or rebuild at a time

    def answer(self, key: Hashable, mark: Callable[[], object], build: Callable[[], bytes]) -> Answer:
        """The answer for ``key``: the one held, or (when ``mark()`` moved or it aged) a new one from ``build()``."""
        answer = self.held(key)
        if answer is not None:
            return answer
        held = self._held.get(key)
        if held is not None and not self._lock.acquire(blocking=False):
            return held.answer  # another request is checking or rebuilding: serve the answer in hand meanwhile
        if held is None:
            self._lock.acquire()
        try:
            return self._check(key, mark, build)
        finally:
            self._lock.release()

    def held(self, key: Hashable) -> Answer | None:
        """The answer for ``key`` if one is held and needs no check yet, else None."""
        held = self._held.get(key)
        if held is not None and held.checked_until > time.monotonic() and held.commits == self.commits():
            return held.answer
        return None

    def _check(self, key: Hashable, mark: Callable[[], object], build: Callable[[], bytes]) -> Answer:
        """Ask the mark (holding the lock); rebuild when it moved or the answer aged."""
        commits, asked_at = self.commits(), time.monotonic()  # before the mark: a commit after it is seen next time
        current = mark()
        held = self._held.get(key)  # perhaps built while this request waited for the lock
        aged = held is not None and self.max_age is not None and asked_at - held.built_at >= self.max_age
        if held is None or held.mark != current or aged:
            held = _Held(Answer.of(build()), current, 0.0, commits, asked_at)
        if len(self._held) >= MAX_ANSWERS and key not in self._held:
            self._held.clear()
        self._held[key] = dataclasses.replace(held, checked_until=time.monotonic() + self.check_every,
                                              commits=commits)
        return held.answer

    def clear(self) -> None:
        """Forget every answer (this process changed what they show)."""
        self._held = {}


def serve_held(answers_of: Callable[[], SharedAnswers]):
    """Decorator, below ``require``: a held answer for the request's query string is returned before the
    view's arguments are parsed again (an answer is only kept for a query string its view accepted)."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            from flask import request

            answer = answers_of().held(request.query_string)
            return view(*args, **kwargs) if answer is None else respond(answer)

        return wrapper

    return decorator


class HeldBeneath:
    """WSGI wrapper of the app: a GET whose shared answer is held gets its bytes without Flask.

    Screens poll the public dashboard document and the station list; once an answer is held,
    Flask's request context, routing, argument parsing and response objects were most of what a
    request cost in the interpreter. A route with roles is answered here only for a token checked
    within ``TOKEN_RECHECK_SECONDS`` that holds one (``held_check_allows``). Anything else (another
    method, ``If-None-Match``, a token to read or refuse, an answer to check or build) goes to the app.
    """

    def __init__(self, wsgi_app, known_tokens) -> None:
        self.wsgi_app, self.known_tokens = wsgi_app, known_tokens
        self._routes: dict[str, tuple] = {}

    def serve(self, path: str, answers: SharedAnswers, key_of: Callable[[dict], Hashable], headers: dict[str, str],
              roles: tuple[str, ...] = ()) -> None:
        """Answer GET ``path`` from ``answers[key_of(environ)]`` while it is held, with ``headers`` besides its own."""
        self._routes[path] = (answers, key_of, list(headers.items()), roles)

    def __call__(self, environ, start_response):
        route = self._routes.get(environ.get("PATH_INFO", ""))
        if route is None or environ.get("REQUEST_METHOD") != "GET" or "HTTP_IF_NONE_MATCH" in environ:
            return self.wsgi_app(environ, start_response)
        answers, key_of, headers, roles = route
        if roles and not held_check_allows(self.known_tokens, environ.get("HTTP_AUTHORIZATION", ""), roles):
            return self.wsgi_app(environ, start_response)
        answer = answers.held(key_of(environ))
        if answer is None:
            return self.wsgi_app(environ, start_response)
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer.body))),
                                  ("ETag", answer.etag), *headers])
        return [answer.body]


def query_string(environ) -> bytes:
    """The request's query string as Flask's ``request.query_string`` gives it (a station list's answer key)."""
    return environ.get("QUERY_STRING", "").encode("latin-1")


def respond(answer: Answer, headers: dict[str, str] | None = None):
    """``answer`` as the response: 304 without a body when the caller holds it already (``If-None-Match``)."""
    from flask import current_app, request

    headers = {"ETag": answer.etag, **(headers or {})}
    if "If-None-Match" in request.headers and request.if_none_match.contains_weak(answer.etag.strip('"')):
        return current_app.response_class(status=304, headers=headers)
    return current_app.response_class(answer.body, mimetype="application/json", headers=headers)
