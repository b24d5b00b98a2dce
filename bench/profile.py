"""Profiling the server side under load with py-spy, and where the time goes in one table.

`python -m bench --profile DIR ...` records each server process during the measured window
(`py-spy record --format raw`: collapsed stacks, one `frame;frame;... count` line each, pinned to
the generator's core so the server's core is left alone), then prints the functions with the
most samples on top of the stack (self) and anywhere on it (total). `python -m bench.profile FILE`
summarizes a recorded file again.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.servers import pinned

RATE = 250  # samples per second
# Frames every sample of the event loop thread passes through: left out of the "total" table.
_FRAME_NOISE = ("<frozen runpy>", "__main__.py", "cli.py", "run_app", "run_until_complete",
                "run_forever", "_run_once", "Handle._run")
_LINE = re.compile(r"^(.*) (\d+)$")


def start(pid: int, out: Path, seconds: float, core: str | None) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        print("profile: py-spy is not installed (pip install -e '.[bench]')", file=sys.stderr)
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [exe, "record", "--pid", str(pid), "--format", "raw", "--rate", str(RATE),
            "--duration", str(max(1, int(seconds))), "--nonblocking", "--output", str(out)]
    return subprocess.Popen(pinned(core, argv), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _short(frame: str) -> str:
    """`send_frame (aiohttp/_websocket/writer.py:73)` -> `send_frame (aiohttp/.../writer.py)`."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    for anchor in ("site-packages", "lib"):
        if anchor in parts:
            parts = parts[parts.index(anchor) + 1 :]
            break
    return f"{name} ({'/'.join(parts[-3:])})" if path else name


def summarize(path: Path, top: int = 20) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        stack, count = match.group(1).split(";"), int(match.group(2))
        samples += count
        frames = [_short(f) for f in stack]
        own[frames[-1]] += count
        for name in set(frames):
            if not any(noise in name for noise in _FRAME_NOISE):
                total[name] += count
    if not samples:
        return f"{path}: no samples"
    rows = [f"{path.name}: {samples} samples", "", "| self % | function |", "| --- | --- |"]
    rows += [f"| {100 * n / samples:.1f} | {name} |" for name, n in own.most_common(top)]
    rows += ["", "| total % | function |", "| --- | --- |"]
    rows += [f"| {100 * n / samples:.1f} | {name} |" for name, n in total.most_common(top)]
    return "\n".join(rows)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(summarize(Path(arg)))
