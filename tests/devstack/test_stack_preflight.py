"""The stack refuses to start, saying which part and which port, instead of hanging or half-starting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.devstack.ports import PortTakenError, free_port
from services.devstack.settings import PROJECT_ROOT
from services.devstack.stack import Stack, StackError


def test_stack_refuses_a_taken_service_port_naming_the_part_and_the_port(tmp_path, taken_port):
    stack = Stack.isolated(tmp_path, services=("status", "ingress"), model=False)
    stack.settings.ingress_port = taken_port

    with pytest.raises(PortTakenError) as err:
        stack.start()

    assert f"port {taken_port} for ingress is taken" in str(err.value)
    assert "INGRESS_PORT" in str(err.value)
    assert not (tmp_path / "nats").exists() and not (tmp_path / "pg").exists(), "nothing may start before the check"


def test_stack_refuses_a_taken_nats_port_and_says_how_to_use_an_existing_server(tmp_path, taken_port):
    stack = Stack.isolated(tmp_path, services=(), model=False)
    stack.settings.nats_port = taken_port

    with pytest.raises(
        PortTakenError, match=f"port {taken_port} for NATS is taken \\(set RELAY_NATS_PORT or NATS_URL\\)"
    ):
        stack.start()


def test_stack_refuses_two_parts_on_one_port(tmp_path):
    stack = Stack.isolated(tmp_path, services=("status", "ingress"), model=False)
    stack.settings.ingress_port = stack.settings.status_port

    with pytest.raises(StackError, match=f"both set to port {stack.settings.status_port}"):
        stack.preflight()


def test_relay_up_exits_with_a_message_when_the_postgres_port_is_taken(tmp_path, taken_port, strays):
    ports = {var: str(free_port()) for var in ("RELAY_NATS_PORT", "RELAY_MODEL_PORT", "INGRESS_PORT", "STATUS_PORT",
                                               "RETRIEVER_PORT", "GENERATOR_PORT", "UI_PORT")}  # fmt: skip
    env = {**os.environ, **ports, "RELAY_STATE_DIR": str(tmp_path), "RELAY_PG_PORT": str(taken_port)}
    for var in ("NATS_URL", "DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(var, None)

    run = subprocess.run(
        [sys.executable, "-m", "services.devstack.stack"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode == 2, run.stdout + run.stderr
    assert f"port {taken_port} for PostgreSQL is taken (set RELAY_PG_PORT or DATABASE_URL)" in run.stderr
    assert not strays(tmp_path)


def test_stack_explains_a_nats_server_that_exits_at_start_with_its_log(tmp_path, strays):
    stack = Stack.isolated(tmp_path, services=(), model=False)
    stack.settings.nats_sync = "not-a-duration"

    with pytest.raises(StackError) as err:
        stack.start()

    assert "nats-server did not start" in str(err.value)
    assert "sync" in str(err.value).split("its last log lines", 1)[1], "the failure quotes nats-server's own complaint"
    assert not strays(tmp_path), "PostgreSQL, started before it, is stopped again"
