"""`pip install .` (a wheel, not an editable checkout) serves the page and migrates: the static
files and the migrations ship as package data. The wheel is installed into a fresh virtualenv
outside the repository; its dependencies come from the test environment's site-packages (a .pth
line), so only chatserver itself comes from the wheel."""

from __future__ import annotations

import asyncio
import os
import site
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from tests.localhost import REPO, free_port

START_TIMEOUT = 60.0


def build_wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                    str(REPO)], check=True, timeout=300)
    (wheel,) = out.glob("chatserver-*.whl")
    return wheel


def venv_with(wheel: Path, where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    (purelib,) = where.glob("lib/python3*/site-packages")
    # The dependencies, not chatserver: the test environment's editable install is a finder
    # registered by a .pth file there, which is not run for a directory added this way.
    (purelib / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(where / "bin" / "python"),
                    "install", "-q", "--no-deps", str(wheel)], check=True, timeout=120)
    return where / "bin" / "chatserver"


async def test_an_installed_wheel_serves_the_page(tmp_path: Path) -> None:
    command = venv_with(build_wheel(tmp_path / "dist"), tmp_path / "venv")
    origin = subprocess.run(
        [str(command.parent / "python"), "-c", "import chatserver; print(chatserver.__file__)"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    ).stdout
    assert str(tmp_path / "venv") in origin, origin  # not the checkout
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATSERVER_")}
    env.update(PORT=str(port), CHATSERVER_SERVER_HOST="127.0.0.1",
               CHATSERVER_DATABASE_DATA_DIR=str(tmp_path / "pgdata"))
    server = subprocess.Popen([str(command), "serve"], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                try:
                    async with http.get(base + "/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert server.poll() is None and time.monotonic() < deadline, "did not start"
                await asyncio.sleep(0.2)
            async with http.get(base + "/") as resp:
                assert resp.status == 200
                assert '<script type="module" src="/static/page.js">' in await resp.text()
            async with http.get(base + "/docs") as resp:
                assert resp.status == 200  # the API reference page
            for name in ("page.js", "chat.js", "chat.css", "docs.js",
                         "vendor/redoc/redoc.standalone.js"):
                async with http.get(f"{base}/static/{name}") as resp:
                    assert resp.status == 200, name
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert "no browser page" not in stderr
