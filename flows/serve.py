"""A local Prefect stack without docker: server on loopback, deployments, one process worker per pool.

`dllm2rec flow serve` (and `make serve`) runs this until Ctrl-C; the integration tests use
the same class with a free port and a temporary PREFECT_HOME. Children start in their own
sessions, so Ctrl-C reaches only this supervisor, which stops workers first, then the server.

    >>> with LocalStack(port=4200) as stack:          # doctest: +SKIP
    ...     stack.register(DeploySettings(root="runs"))
    ...     stack.start_worker("teacher-gpu"); stack.start_worker("student")
    ...     stack.wait()
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import IO

from flows.common import logger


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prefect_cli() -> list[str]:
    """The `prefect` command of this interpreter's environment."""
    return [sys.executable, "-m", "prefect"]


class LocalStack:
    """Owns a `prefect server start` process and `prefect worker start` processes."""

    def __init__(self, host: str = "127.0.0.1", port: int = 4200, home: str | Path | None = None,
                 log_dir: str | Path | None = None, extra_env: dict[str, str] | None = None,
                 workers_to_terminal: bool = False):
        self.host, self.port = host, port
        self.url = f"http://{host}:{port}"
        self.api_url = f"{self.url}/api"
        self.log_dir = Path(log_dir) if log_dir else None
        self.workers_to_terminal = workers_to_terminal  # else they log to log_dir too
        env = {**os.environ, "PREFECT_API_URL": self.api_url,
               "PREFECT_SERVER_ANALYTICS_ENABLED": os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED", "false")}
        if home:
            env["PREFECT_HOME"] = str(Path(home).resolve())
        self.env = {**env, **(extra_env or {})}
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self._files: list[IO] = []

    # -- processes -------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        out: IO | None = None
        if self.log_dir and not (self.workers_to_terminal and name != "server"):
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "ab")
            self._files.append(out)
        proc = subprocess.Popen(prefect_cli() + args, env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def start_server(self, timeout: float = 90) -> None:
        """Start `prefect server start` on host:port and wait until /api/health answers."""
        proc = self._spawn("server", ["server", "start", "--host", self.host, "--port", str(self.port)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited with code {proc.returncode}"
                                   + (f"; see {self.log_dir / 'server.log'}" if self.log_dir else ""))
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        logger().info("Prefect server healthy at %s", self.url)
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"prefect server at {self.url} not healthy after {timeout:.0f} s")

    def start_worker(self, pool: str, name: str | None = None) -> subprocess.Popen:
        """A process worker polling `pool` (its flow runs are children of the worker)."""
        name = name or f"worker-{pool}"
        return self._spawn(name, ["worker", "start", "--pool", pool, "--type", "process", "--name", name])

    def register(self, settings) -> dict[str, str]:
        """Register the deployments (flows.deploy) against this server."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from flows.deploy import register

        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            return register(settings)

    def wait(self) -> None:
        """Block until a child dies or Ctrl-C / SIGTERM arrives."""
        stop = {"flag": False}

        def handler(signum, frame):  # noqa: ARG001
            stop["flag"] = True

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not stop["flag"]:
                dead = [(n, p.returncode) for n, p in self.procs if p.poll() is not None]
                if dead:
                    logger().error("stopping: %s exited (%s)", dead[0][0], dead[0][1])
                    break
                time.sleep(0.5)
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM every worker at once, then the server; SIGKILL what is still alive after `timeout` each."""
        workers = [(n, p) for n, p in self.procs if n != "server"]
        server = [(n, p) for n, p in self.procs if n == "server"]
        for group in (workers, server):
            for _, proc in group:
                if proc.poll() is None:
                    _signal_group(proc, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for name, proc in group:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    logger().warning("%s did not stop in %.0f s: killing it", name, timeout)
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait()
        self.procs.clear()
        for f in self._files:
            f.close()
        self._files.clear()

    def __enter__(self) -> "LocalStack":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def serve(settings, host: str = "127.0.0.1", port: int = 4200, home: str | None = None,
          log_dir: str | None = None) -> None:
    """Server + deployments + a worker per pool until Ctrl-C (what `make serve` runs).

    The server's own log (noisy with SQLite retries under load) goes to `<log_dir>/server.log`;
    the workers print their flow runs' logs to this terminal.
    """
    log_dir = Path(log_dir or Path(settings.root) / ".serve-logs")
    with ExitStack() as stack:
        local = stack.enter_context(LocalStack(host, port, home=home, log_dir=log_dir, workers_to_terminal=True))
        local.start_server()
        ids = local.register(settings)
        for pool in dict.fromkeys([settings.teacher_pool, settings.student_pool]):
            local.start_worker(pool)
        print(f"\nPrefect UI: {local.url}   (server log: {log_dir / 'server.log'})\n", flush=True)
        for name in ids:
            print(f"  deployment {name}", flush=True)
        print(f"\nTrigger the pipeline: open {local.url}/deployments, pick pipeline/pipeline, 'Run' -> 'Custom run'\n"
              f"or: PREFECT_API_URL={local.api_url} prefect deployment run pipeline/pipeline\n"
              "Stop with Ctrl-C.\n", flush=True)
        local.wait()
        print("stopping workers and server ...", flush=True)
