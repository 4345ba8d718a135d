"""SQLite writers of one process take turns (service/db/turns.py): woken at release, handed the turn once they waited long enough."""

from __future__ import annotations

import threading

from service.db.turns import WriteTurns


class Conn:
    """A stand-in for a DBAPI connection: only its identity matters to the turns."""


def _until(condition) -> None:
    event = threading.Event()
    while not condition():
        event.wait(0.001)


def _writer(turns: WriteTurns, order: list, name: str) -> threading.Thread:
    def run():
        conn = Conn()
        turns.take(conn)
        order.append(name)
        turns.give_back(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_free_turn_is_taken_at_once_and_given_back():
    turns = WriteTurns(timeout=30)
    first, second = Conn(), Conn()
    turns.take(first)
    turns.give_back(first)
    turns.take(second)  # would wait (on another thread) if the first had kept it
    turns.give_back(second)
    assert turns.waiting() == 0


def test_waiting_writers_are_served_in_arrival_order():
    turns, order = WriteTurns(timeout=30, handover_after=0.0), []
    holder = Conn()
    turns.take(holder)
    threads = []
    for number, name in enumerate(["a", "b", "c"], start=1):
        threads.append(_writer(turns, order, name))
        _until(lambda: turns.waiting() == number)
    turns.give_back(holder)
    for thread in threads:
        thread.join(10)
    assert order == ["a", "b", "c"]
    assert turns.waiting() == 0


def test_a_writer_that_has_waited_long_enough_is_handed_the_turn_before_the_giver_takes_it_again():
    turns, order = WriteTurns(timeout=30, handover_after=0.0), []
    batch = Conn()
    turns.take(batch)
    dispatcher = _writer(turns, order, "dispatcher")
    _until(lambda: turns.waiting() == 1)
    turns.give_back(batch)
    next_batch = threading.Thread(target=lambda: (turns.take(batch), order.append("batch"), turns.give_back(batch)))
    next_batch.start()
    next_batch.join(10)
    dispatcher.join(10)
    assert order == ["dispatcher", "batch"]


def test_a_second_transaction_on_the_holding_thread_does_not_wait_for_itself():
    turns = WriteTurns(timeout=30)
    outer, inner = Conn(), Conn()
    turns.take(outer)
    turns.take(inner)  # SQLite's own locking decides for it, as before the turns
    turns.give_back(inner)
    assert turns.waiting() == 0
    turns.give_back(outer)


def test_a_writer_waits_at_most_the_timeout_then_goes_ahead_without_the_turn():
    turns = WriteTurns(timeout=0.01)
    holder, late = Conn(), Conn()
    turns.take(holder)
    went_ahead = threading.Event()
    thread = threading.Thread(target=lambda: (turns.take(late), went_ahead.set()))
    thread.start()
    thread.join(10)
    assert went_ahead.is_set()
    assert turns.waiting() == 0
    turns.give_back(late)  # it never held the turn: nothing changes
    turns.give_back(holder)
    turns.take(late)
    turns.give_back(late)
