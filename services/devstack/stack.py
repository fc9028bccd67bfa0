"""The whole local stack as one object: NATS, PostgreSQL, the offline model, the four services, the chat.

``relay up`` (``python -m services.devstack.stack``) starts it and runs until Ctrl-C or SIGTERM,
then stops it in reverse order: the chat and the services (each drains), the model, NATS,
PostgreSQL. Tests use ``Stack.isolated(tmp_path, env=...)``: free ports, a throw-away state
folder, optional chat, and ``stop_service`` / ``start_service`` to kill and revive one part.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from services.devstack.model_server import ModelServer
from services.devstack.nats import NatsServer, find_nats_server
from services.devstack.ports import PortTakenError, free_port, port_in_use
from services.devstack.postgres import LocalPostgres, find_pg_bin
from services.devstack.settings import LOCAL_MODEL_ALIAS, PROJECT_ROOT, StackSettings
from services.devstack.supervisor import Supervisor

__all__ = ["Stack", "StackError", "SERVICES", "main"]

#: Start order; they stop in reverse. The chat ("ui") comes last when it is wanted.
SERVICES = ("status", "retriever", "generator", "ingress")
_PORT_VARS = {"ingress": "INGRESS_PORT", "status": "STATUS_PORT", "retriever": "RETRIEVER_PORT", "generator": "GENERATOR_PORT", "ui": "UI_PORT"}  # fmt: skip
_PROVIDER_VARS = ("OPENAI_API_KEY", "OPENAI_BASE_URL")


class StackError(RuntimeError):
    """The stack cannot start as configured; the message says what to change."""


class Stack:
    """Starts the parts in order, tells each where the others are, and stops them in reverse."""

    def __init__(
        self,
        settings: StackSettings | None = None,
        *,
        env: Mapping[str, str] | None = None,
        ui: bool = True,
        services: Sequence[str] = SERVICES,
        model: bool | None = None,
        echo: IO[str] | None = None,
        fsync: bool = True,
        commands: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.settings = s = settings or StackSettings()
        self.env = dict(env or {})  # wins over everything the stack computes
        self.commands = {k: list(v) for k, v in (commands or {}).items()}  # run another command for a part
        self.service_names = tuple(services) + (("ui",) if ui else ())
        provider_given = bool(s.openai_api_key or s.openai_base_url or set(_PROVIDER_VARS) & self.env.keys())
        self.with_model = (not provider_given) if model is None else model
        self.state_dir = s.state_dir.absolute()
        self.fsync = fsync
        self.nats: NatsServer | None = None
        self.postgres: LocalPostgres | None = None
        self.model: ModelServer | None = None
        self.nats_url = s.nats_url or f"nats://{s.host}:{s.nats_port}"
        self.database_url = s.database_url or ""
        self.openai_base_url = (
            f"http://{s.host}:{s.model_port}/v1"
            if self.with_model
            else (self.env.get("OPENAI_BASE_URL") or s.openai_base_url or "")
        )
        self.supervisor = Supervisor(self.state_dir / "logs", cwd=PROJECT_ROOT, echo=echo)
        for name in self.service_names:
            self.supervisor.out.widen(name)

    @classmethod
    def isolated(
        cls,
        state_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        ui: bool = False,
        ready_timeout_s: float = 180.0,
        **kwargs: Any,
    ) -> Stack:
        """Free ports, a throw-away state folder, no NATS/PostgreSQL/provider/Qdrant of the environment.

        ``env`` goes to every part and wins (e.g. ``OPENAI_BASE_URL`` of a scripted provider, which
        also skips the offline model; ``RETRIEVER_SEED_DIR=""`` to start with an empty collection).
        ``kwargs``: ``services``, ``model``, ``echo``, ``commands`` of the constructor.
        """
        values: dict[str, Any] = {
            var: free_port() for var in ("RELAY_NATS_PORT", "RELAY_PG_PORT", "RELAY_MODEL_PORT", *_PORT_VARS.values())
        }
        values.update(RELAY_STATE_DIR=Path(state_dir), RELAY_READY_TIMEOUT_S=ready_timeout_s)
        values.update(
            dict.fromkeys(
                ("NATS_URL", "DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "QDRANT_URL", "QDRANT_PATH")
            )
        )
        settings = StackSettings(_env_file=None, **values)  # type: ignore[call-arg]
        return cls(settings, env=env, ui=ui, fsync=False, **kwargs)

    # --- what runs where ------------------------------------------------------------------------

    def port_of(self, name: str) -> int:
        return int(getattr(self.settings, f"{name}_port"))

    def url_of(self, name: str) -> str:
        return f"http://{self.settings.host}:{self.port_of(name)}"

    @property
    def urls(self) -> dict[str, str]:
        """Where everything answers: chat, ingress, docs, status, retriever, generator, model, nats, database, metrics_*."""
        out = {name: self.url_of(name) for name in self.service_names}
        if "ui" in out:
            out["chat"] = out.pop("ui")
        if "ingress" in out:
            out["docs"] = out["ingress"] + "/docs"
        for name in self.service_names:
            if name != "ui":
                out[f"metrics_{name}"] = self.url_of(name) + "/metrics"
        return {**out, "model": self.openai_base_url, "nats": self.nats_url, "database": self.database_url}

    def _planned_ports(self) -> list[tuple[str, int, str]]:
        s, out = self.settings, []
        if not s.nats_url:
            out.append(("NATS", s.nats_port, "RELAY_NATS_PORT or NATS_URL"))
        if not s.database_url:
            out.append(("PostgreSQL", s.pg_port, "RELAY_PG_PORT or DATABASE_URL"))
        if self.with_model:
            out.append(("the model server", s.model_port, "RELAY_MODEL_PORT, or OPENAI_BASE_URL for another provider"))
        out += [
            (name if name != "ui" else "the chat (ui)", self.port_of(name), _PORT_VARS[name])
            for name in self.service_names
        ]
        return out

    def preflight(self) -> None:
        """Refuse to start, saying why, before anything runs: taken ports, missing binaries or modules."""
        planned = self._planned_ports()
        seen: dict[int, str] = {}
        for part, port, var in planned:
            if port in seen:
                raise StackError(f"{part} and {seen[port]} are both set to port {port}: change {var}")
            seen[port] = part
        taken = [
            f"port {port} for {part} is taken (set {var})"
            for part, port, var in planned
            if port_in_use(port, self.settings.host)
        ]
        if taken:
            raise PortTakenError("cannot start: " + "; ".join(taken) + self._earlier_run_hint())
        if not self.settings.nats_url:
            find_nats_server()
        if not self.settings.database_url:
            find_pg_bin()
        if self.with_model:
            ModelServer(model_path=self.settings.model_path, port=self.settings.model_port).command()
        for name in self.service_names:
            module = "streamlit" if name == "ui" else f"services.{name}.__main__"
            if name in self.commands:
                continue
            if importlib.util.find_spec(module) is None:
                raise StackError(f"{module.removesuffix('.__main__')} cannot run (no {module}): run scripts/setup")
        if "ui" in self.service_names and "ui" not in self.commands and not (PROJECT_ROOT / "ui" / "app.py").exists():
            raise StackError(f"the chat page {PROJECT_ROOT / 'ui' / 'app.py'} is missing")

    def _earlier_run_hint(self) -> str:
        pid_file = self.state_dir / "stack.pid"
        if pid_file.exists():
            return f" — a stack from {self.state_dir} may still be running (pid {pid_file.read_text().strip()})"
        return ""

    # --- start and stop --------------------------------------------------------------------------

    def start(self) -> Stack:
        self.preflight()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "stack.pid").write_text(str(os.getpid()))
        try:
            self._start_infrastructure()
            for name in self.service_names:
                self._add_part(name)
            self.supervisor.start([n for n in self.service_names if n != "ui"], timeout=self.settings.ready_timeout_s)
            if "ui" in self.service_names:
                self.supervisor.start(["ui"], timeout=self.settings.ready_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_infrastructure(self) -> None:
        s, say, logs = self.settings, self.supervisor.out.system, self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        if not s.database_url:
            say(f"starting PostgreSQL on port {s.pg_port} (data in {self.state_dir / 'pg'})")
            self.postgres = LocalPostgres(self.state_dir / "pg", port=s.pg_port, host=s.host, fsync=self.fsync)
            with _explained("PostgreSQL", self.state_dir / "pg" / "server.log"):
                self.postgres.start()
            self.database_url = self.postgres.create_database(s.pg_database)
        if not s.nats_url:
            say(
                f"starting nats-server on port {s.nats_port} (JetStream in {self.state_dir / 'nats'}, sync {s.nats_sync})"
            )
            self.nats = NatsServer(self.state_dir / "nats", port=s.nats_port, host=s.host, sync_interval=s.nats_sync,
                                   log_file=logs / "nats.log")  # fmt: skip
            with _explained("nats-server", logs / "nats.log"):
                self.nats.start()
        if self.with_model:
            say(f"starting the offline model server on port {s.model_port} ({LOCAL_MODEL_ALIAS})")
            self.model = ModelServer(
                model_path=s.model_path, port=s.model_port, host=s.host, n_ctx=s.model_ctx,
                n_threads=s.model_threads, n_threads_batch=s.model_batch_threads, log_file=logs / "model.log",
            )  # fmt: skip
            self.model.start(timeout=s.ready_timeout_s)

    def _env_for(self, name: str) -> dict[str, str]:
        s, host = self.settings, self.settings.host
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NATS_URL": self.nats_url, "LOG_LEVEL": s.log_level,
               "LOG_JSON": "true" if s.log_json else "false", "SERVICE_NAME": name}  # fmt: skip
        if name == "ui":
            env.update(RELAY_INGRESS_URL=self.url_of("ingress"), RELAY_STATUS_URL=self.url_of("status"))
        else:
            env[f"{name.upper()}_HOST"] = host
            env[f"{name.upper()}_PORT"] = str(self.port_of(name))
        if name == "status":
            env["DATABASE_URL"] = self.database_url
        if name == "retriever":
            env["RETRIEVER_SEED_DIR"] = str(s.seed_dir)
            if not s.qdrant_url:
                env["QDRANT_PATH"] = str(s.qdrant_path or self.state_dir / "qdrant")
        if name == "ingress":  # the 202 names absolute URLs: polls go to the status service, not here
            env.update(INGRESS_PUBLIC_BASE_URL=self.url_of("ingress"), INGRESS_STATUS_BASE_URL=self.url_of("status"))
        if self.with_model:
            # a small CPU model reads a long retrieval prompt slowly on a busy machine
            env.update(OPENAI_BASE_URL=self.openai_base_url, OPENAI_API_KEY="local-no-key-needed",
                       GENERATOR_STALL_TIMEOUT_S="180")  # fmt: skip
            env["OPENAI_MODEL"] = s.openai_model or LOCAL_MODEL_ALIAS
        env.update(self.env)
        return env

    def _add_part(self, name: str) -> None:
        if name == "ui":
            cmd = [sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "ui" / "app.py"),
                   "--server.port", str(self.port_of("ui")), "--server.address", self.settings.host,
                   "--server.headless", "true", "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]  # fmt: skip
            ready = self.url_of("ui") + "/_stcore/health"
        else:
            cmd, ready = [sys.executable, "-m", f"services.{name}"], self.url_of(name) + "/ready"
        self.supervisor.add(name, self.commands.get(name, cmd), env=self._env_for(name), ready_url=ready)

    def stop_service(self, name: str, *, kill: bool = False) -> None:
        """Stop one part (SIGTERM and drain, or SIGKILL with ``kill=True``); the rest keeps running."""
        part = self.supervisor.parts[name]
        part.kill() if kill else part.stop(self.settings.stop_timeout_s)

    def start_service(self, name: str, *, wait: bool = True) -> None:
        """Start one part again (same ports, same state) and wait for its /ready."""
        part = self.supervisor.parts[name]
        part.start()
        if wait:
            part.wait_ready(time.monotonic() + self.settings.ready_timeout_s)

    def stop(self) -> None:
        """Services first (each drains), then the model, NATS and PostgreSQL. Safe to call twice."""
        self.supervisor.stop(timeout=self.settings.stop_timeout_s)
        for attr in ("model", "nats", "postgres"):
            part = getattr(self, attr)
            if part is not None and part.proc is not None:
                part.stop()
                self.supervisor.out.system(f"{attr} stopped")
        pid_file = self.state_dir / "stack.pid"
        if pid_file.exists() and pid_file.read_text().strip() == str(os.getpid()):
            pid_file.unlink()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def _explained(part: str, log: Path) -> Iterator[None]:
    """A part that exits or never listens becomes a StackError quoting its log (a taken port stays as it is)."""
    try:
        yield
    except PortTakenError:
        raise
    except (RuntimeError, TimeoutError) as exc:
        tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
        raise StackError(
            f"{part} did not start: {exc}; its last log lines:\n" + "\n".join(f"  {t}" for t in tail)
        ) from exc


def main(argv: Sequence[str] | None = None) -> int:
    """``relay up``: start everything, print the URLs, run until Ctrl-C/SIGTERM (see ``services.devstack.up``)."""
    from services.devstack.up import run

    return run(argv)


if __name__ == "__main__":
    raise SystemExit(main())
