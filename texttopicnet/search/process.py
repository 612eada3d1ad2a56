"""The search server as a child process: ``search/02_serve.py`` on a free 127.0.0.1 port.

For the code that talks to the real server over HTTP (the browser test, the load benchmark)::

    with ServerProcess(index_dir, log=tmp / "server.log") as server:
        server.wait_healthy(300)
        httpx.get(server.url + "/api/info")
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVE_SCRIPT = ROOT / "search" / "02_serve.py"


class ServerStartError(RuntimeError):
    """The server exited, or did not answer /api/health in time (the message ends with its log)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``search/02_serve.py --index INDEX`` started now, its output (stdout and stderr) going to ``log``."""

    def __init__(self, index: Path, log: Path, *, port: int | None = None, log_level: str = "warning"):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(log)
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        cmd = [sys.executable, str(SERVE_SCRIPT), "--index", str(index), "--port", str(self.port),
               "--log-level", log_level]
        self._out = open(self.log, "wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.is_file() else ""

    def wait_healthy(self, timeout_s: float, poll_s: float = 0.5) -> float:
        """Wait until ``/api/health`` answers 200; returns the seconds waited. Raises :class:`ServerStartError`
        when the process exits first or ``timeout_s`` passes."""
        import httpx

        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if not self.running():
                raise ServerStartError(f"the server exited ({self.proc.returncode}): {self.log_tail()}")
            try:
                if httpx.get(self.url + "/api/health", timeout=5).status_code == 200:
                    return time.monotonic() - t0
            except httpx.HTTPError:
                pass
            time.sleep(poll_s)
        raise ServerStartError(f"the server did not answer within {timeout_s:g} s: {self.log_tail()}")

    def stop(self, timeout_s: float = 30) -> None:
        """Terminate, then kill when it has not exited after ``timeout_s``."""
        if self.running():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
