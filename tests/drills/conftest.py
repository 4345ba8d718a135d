"""Fault drills: each prints its figures (``pytest -s``) and one summary line to the terminal (always)."""

from __future__ import annotations

import pytest


@pytest.fixture
def figure(capsys, request):
    """``figure(name, value)`` prints a figure; ``figure.summary(text)`` writes the drill's one-line summary."""

    class Figures:
        def __call__(self, name: str, value) -> None:
            print(f"[drill {request.node.name}] {name}: {value}")

        def summary(self, text: str) -> None:
            print(f"[drill {request.node.name}] {text}")
            with capsys.disabled():
                print(f"\nDRILL {request.node.name}: {text}")

    return Figures()
