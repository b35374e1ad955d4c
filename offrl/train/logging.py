"""Metrics to CSV files and TensorBoard. On resume, rows after the checkpoint are dropped first."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

TRAIN_CSV = "metrics.csv"
EVAL_CSV = "evaluations.csv"
TENSORBOARD_DIR = "tensorboard"


class CSVLog:
    """Append-only CSV with a ``step`` column; a new key rewrites the header once."""

    def __init__(self, path: Path, *, keep_until_step: int | None = None) -> None:
        self.path = path
        self.rows = read_csv(path)
        if keep_until_step is not None:
            self.rows = [r for r in self.rows if int(float(r["step"])) <= keep_until_step]
        elif self.rows:
            raise FileExistsError(f"{path} exists; resume the run instead of starting it again")
        self.fields: list[str] = list(self.rows[0].keys()) if self.rows else []
        self._rewrite()

    def append(self, row: dict[str, Any]) -> None:
        row = {k: _fmt(v) for k, v in row.items()}
        self.rows.append(row)
        if any(key not in self.fields for key in row):
            self.fields += [key for key in row if key not in self.fields]
            self._rewrite()
            return
        with open(self.path, "a", newline="") as handle:
            csv.DictWriter(handle, self.fields).writerow(row)
            handle.flush()

    def _rewrite(self) -> None:
        if not self.fields:
            self.path.write_text("")
            return
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, self.fields)
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a metrics CSV; a last row cut short by a crash is ignored."""
    if not path.is_file() or path.stat().st_size == 0:
        return []
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [r for r in rows if None not in r.values() and r.get("step") not in (None, "")]


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


class MetricsLogger:
    def __init__(self, run_dir: Path, *, resume_step: int | None = None, tensorboard: bool = True) -> None:
        self.train = CSVLog(run_dir / TRAIN_CSV, keep_until_step=resume_step)
        self.eval = CSVLog(run_dir / EVAL_CSV, keep_until_step=resume_step)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self.writer = SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=purge)

    def log_train(self, step: int, metrics: dict[str, float]) -> None:
        self.train.append({"step": step, **metrics})
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(f"train/{key}", value, step)

    def log_eval(self, step: int, metrics: dict[str, float]) -> None:
        self.eval.append({"step": step, **metrics})
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(f"eval/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
