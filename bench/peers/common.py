"""What the peers share: the open-files limit, command-line arguments, the event loop."""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
import uuid
from typing import Any


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE to the hard limit (20,000 here); return the new soft limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def install_uvloop(enabled: bool) -> str:
    """Use uvloop when asked and installed; return the name of the loop in use."""
    if enabled:
        try:
            import uvloop
        except ImportError:
            return "asyncio"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    return "asyncio"


def peer_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop when installed")
    return parser


def stored_message(conversation_id: str, seq: int, body: dict[str, Any]) -> dict[str, Any]:
    """What a peer "stores" and sends for a published body: our message shape, kept nowhere."""
    return {
        "id": uuid.uuid4().hex, "conversation_id": conversation_id, "seq": seq,
        "content": body.get("content", ""), "content_type": body.get("content_type", "TEXT"),
        "metadata": body.get("metadata", {}), "client_id": body.get("client_id"),
        "created_at": time.time(),
    }
