"""Console progress: a rich progress bar on a terminal, plain lines elsewhere (CI logs, pipes)."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class TrainingProgress:
    def __init__(self, *, total: int, start: int, enabled: bool, label: str) -> None:
        self.enabled = enabled
        self.total = total
        self.console = Console(stderr=True)
        self.last_eval = "-"
        self.speed = 0.0
        self._bar: Progress | None = None
        self._last_line = time.monotonic()
        if enabled and self.console.is_terminal:
            self._bar = Progress(
                TextColumn(f"[bold]{label}[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[speed]:>7.1f} steps/s"),
                TextColumn("eval {task.fields[last_eval]}"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._task = self._bar.add_task(label, total=total, completed=start, speed=0.0, last_eval="-")

    def __enter__(self) -> TrainingProgress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, step: int, speed: float | None = None) -> None:
        if speed is not None:
            self.speed = speed
        if self._bar is not None:
            self._bar.update(self._task, completed=step, speed=self.speed, last_eval=self.last_eval)
        elif self.enabled and time.monotonic() - self._last_line > 30:
            self.line(f"step {step}/{self.total}  {self.speed:.1f} steps/s  eval {self.last_eval}")

    def evaluation(self, step: int, text: str) -> None:
        self.last_eval = text
        if self._bar is not None:
            self._bar.update(self._task, last_eval=text)
        elif self.enabled:
            self.line(f"step {step}/{self.total}  {self.speed:.1f} steps/s  eval {text}")

    def line(self, text: str) -> None:
        self._last_line = time.monotonic()
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)
