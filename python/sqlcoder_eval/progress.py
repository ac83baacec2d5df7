"""A plain-text progress bar on stderr: redrawn in place on a terminal, a line per tenth otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None, width: int = 30):
        self.label, self.total, self.width = label, total, width
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self._last_tenth = -1

    def update(self, done: int, correct: int, errors: int) -> None:
        frac = done / self.total if self.total else 1.0
        elapsed = time.monotonic() - self.start
        eta = elapsed / done * (self.total - done) if done else 0.0
        bar = "#" * int(frac * self.width)
        line = (f"{self.label} [{bar:<{self.width}}] {done}/{self.total} correct {correct} errors {errors}"
                f" {elapsed:.0f}s elapsed, eta {eta:.0f}s")
        if self.tty:
            self.stream.write("\r" + line)
            self.stream.flush()
        elif int(frac * 10) > self._last_tenth or done == self.total:
            self._last_tenth = int(frac * 10)
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
