"""Run the service under uvicorn: ``distillguard serve DEPLOY_DIR``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from distillguard.errors import DistillGuardError


def require_serve_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise DistillGuardError("distillguard serve needs FastAPI and uvicorn: pip install 'distillguard[serve]'") from None


def serve(deploy_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          allow_failed_gate: bool = False, limits: dict[str, Any] | None = None,
          trusted_proxies: str | None = None) -> None:
    """Check the bundle, then serve it until interrupted.

    ``trusted_proxies``: addresses (comma-separated, or ``*``) whose ``X-Forwarded-For`` names
    the client; unset, the client is the connection's address, which no client can forge.
    """
    require_serve_extra()
    import torch
    import uvicorn

    from distillguard.serve.app import SETTINGS_ENV, configure_process, create_app

    configure_process()
    app = create_app(deploy_dir, allow_failed_gate=allow_failed_gate, limits=limits)  # fails here, once, on a bad bundle
    options: dict[str, Any] = {"host": host, "port": port, "access_log": False, "log_level": "warning",
                               "proxy_headers": trusted_proxies is not None,
                               "forwarded_allow_ips": trusted_proxies or "127.0.0.1", "server_header": False}
    if workers <= 1:
        uvicorn.run(app, **options)
        return
    os.environ[SETTINGS_ENV] = json.dumps({"deploy_dir": str(Path(deploy_dir).resolve()),
                                           "allow_failed_gate": allow_failed_gate, "limits": limits or {}})
    uvicorn.run("distillguard.serve.app:app_from_environment", factory=True, workers=workers, **options)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_local(deploy_dir: str | Path, log: Path, *options: str, timeout: float = 60.0) -> tuple[Any, str]:
    """``distillguard serve`` in a subprocess on a free loopback port, once it answers /health.

    For load tests and end-to-end tests (stderr goes to ``log``). Returns the process and its
    base URL; raises RuntimeError, with the log's tail, if it exits or stays silent.
    """
    import subprocess
    import sys
    import time

    import httpx

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "distillguard", "serve", str(deploy_dir), "--host", "127.0.0.1",
                                "--port", str(port), *options], stdout=subprocess.DEVNULL, stderr=log.open("w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not answer /health within {timeout:g} s")


def stop_local(process: Any) -> None:
    """Terminate a server :func:`start_local` started (kill it after 15 s)."""
    import subprocess

    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
