"""Measuring a stage: wall time and the peak RSS of the whole process tree
(this process and every child, summed), sampled in a background thread."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil


def tree_rss(root: psutil.Process) -> int:
    total = 0
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


@dataclass
class Stage:
    name: str
    seconds: float = 0.0
    peak_rss_bytes: int = 0
    rows: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float | None:
        return self.rows / self.seconds if self.rows and self.seconds else None


@contextmanager
def measured(name: str, interval: float = 0.2):
    stage = Stage(name)
    root = psutil.Process(os.getpid())
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            stage.peak_rss_bytes = max(stage.peak_rss_bytes, tree_rss(root))
            stop.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    try:
        yield stage
    finally:
        stage.seconds = time.perf_counter() - start
        stop.set()
        sampler.join()
        stage.peak_rss_bytes = max(stage.peak_rss_bytes, tree_rss(root))


def run(cmd: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def dir_size(path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total
