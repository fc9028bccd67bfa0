"""A small process supervisor for the local stack, built on honcho's process and printer.

honcho's ``Manager`` runs a Procfile all-or-nothing; the stack also needs to start parts in order,
wait for each one's ``/ready``, and stop or restart a single part (tests kill and revive services).
So each part is a ``honcho.process.Popen`` (own session, stdout+stderr piped) whose lines go to
honcho's ``Printer`` (prefixed, coloured on a terminal), to ``<logs>/<name>.log`` and to a short
tail that failure messages quote.
"""

from __future__ import annotations

import collections
import datetime
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx
from honcho.colour import get_colours
from honcho.printer import Message, Printer
from honcho.process import Popen

__all__ = ["ManagedProcess", "PartFailedError", "Supervisor"]

_TAIL_LINES = 25


class PartFailedError(RuntimeError):
    """A part exited or did not become ready in time; the message quotes its last log lines."""


class ManagedProcess:
    """One child process with prefixed output, a log file, a tail buffer and a readiness URL."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_file: Path,
        ready_url: str | None,
        out: _Output,
        colour: str,
    ) -> None:
        self.name, self.cmd, self.env, self.cwd = name, list(cmd), dict(env), cwd
        self.log_file, self.ready_url, self._out, self.colour = log_file, ready_url, out, colour
        self.tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        if self.alive:
            return
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.tail.clear()
        self.proc = Popen(self.cmd, env=self.env, cwd=str(self.cwd), shell=False, stdin=subprocess.DEVNULL)
        self._reader = threading.Thread(target=self._pump, name=f"log-{self.name}", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        """Read the child's output until it closes; never stop early, or the child blocks on a full pipe."""
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        with open(self.log_file, "ab") as log:
            for raw in iter(stdout.readline, b""):
                try:
                    log.write(raw)
                    log.flush()
                except OSError:
                    pass  # a full disk must not stall the part; the tail and the terminal still get the line
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.tail.append(line)
                self._out.line(self.name, line, self.colour)
        stdout.close()

    def last_lines(self) -> str:
        return "\n".join(f"  {line}" for line in self.tail) or "  (it wrote nothing)"

    def wait_ready(self, deadline: float) -> None:
        """Until ``ready_url`` answers 200; raises PartFailedError if the process exits or time runs out."""
        last = "no answer yet"
        while True:
            if not self.alive:
                code = self.proc.returncode if self.proc else None
                raise PartFailedError(
                    f"{self.name} exited (rc={code}) before it was ready; its last lines:\n{self.last_lines()}"
                )
            if self.ready_url is None:
                return
            try:
                r = httpx.get(self.ready_url, timeout=2.0)
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}"
            if time.monotonic() > deadline:
                raise PartFailedError(
                    f"{self.name} was not ready at {self.ready_url} in time (last answer: {last}); its last lines:\n{self.last_lines()}"
                )
            time.sleep(0.25)

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)  # the child leads its own session: reach its children too
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (the service drains), then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._out.system(f"{self.name} did not stop within {timeout:.0f} s: killing it")
            self._signal(signal.SIGKILL)
            self.proc.wait()
        return self._reap()

    def kill(self) -> int | None:
        """Die at once, the way a crash looks."""
        if self.proc is None:
            return None
        self._signal(signal.SIGKILL)
        self.proc.wait()
        return self._reap()

    def _reap(self) -> int | None:
        code = self.proc.returncode if self.proc else None
        if self._reader:
            self._reader.join(timeout=5)
        self.proc, self._reader = None, None
        return code


class _Output:
    """Thread-safe front of honcho's Printer; silent when ``echo`` is off (tests read log files)."""

    def __init__(self, stream: IO[str] | None) -> None:
        self._printer = Printer(stream) if stream is not None else None
        self._lock = threading.Lock()

    def widen(self, name: str) -> None:
        if self._printer:
            self._printer.width = max(self._printer.width, len(name))

    def line(self, name: str, text: str, colour: str | None) -> None:
        if self._printer:
            with self._lock:
                try:
                    self._printer.write(Message("line", text, datetime.datetime.now(), name, colour))
                except (OSError, ValueError):  # the terminal went away (closed pipe): keep going silently
                    self._printer = None

    def system(self, text: str) -> None:
        self.line("relay", text, None)


class Supervisor:
    """Starts parts in the order added, stops them in reverse."""

    def __init__(self, logs_dir: Path, *, cwd: Path, echo: IO[str] | None = None) -> None:
        self.logs_dir, self.cwd = logs_dir, cwd
        self.out = _Output(echo)
        self.out.widen("relay")
        self.parts: dict[str, ManagedProcess] = {}
        self._colours = get_colours()

    def add(self, name: str, cmd: Sequence[str], *, env: Mapping[str, str], ready_url: str | None) -> ManagedProcess:
        self.out.widen(name)
        part = ManagedProcess(
            name, cmd, env=env, cwd=self.cwd, log_file=self.logs_dir / f"{name}.log", ready_url=ready_url,
            out=self.out, colour=next(self._colours),
        )  # fmt: skip
        self.parts[name] = part
        return part

    def start(self, names: Iterable[str], *, timeout: float) -> None:
        """Start the parts together, then wait until each is ready (they boot in parallel)."""
        started = [self.parts[n] for n in names]
        for part in started:
            part.start()
            self.out.system(f"{part.name} started (pid {part.pid})")
        deadline = time.monotonic() + timeout
        for part in started:
            part.wait_ready(deadline)
            self.out.system(f"{part.name} ready")

    def stop(self, names: Iterable[str] | None = None, *, timeout: float = 20.0) -> None:
        order = list(names) if names is not None else list(reversed(self.parts))
        for name in order:
            part = self.parts[name]
            if part.proc is not None:
                code = part.stop(timeout)
                self.out.system(f"{name} stopped (rc={code})")

    def exited(self) -> ManagedProcess | None:
        """A part that was started and has died on its own, if any."""
        return next((p for p in self.parts.values() if p.proc is not None and p.proc.poll() is not None), None)
