"""One webhook HTTP attempt: a signed POST through the SSRF-guarded resolver, never following
redirects, bounded by `[webhooks] timeout`, keeping at most `response_body_max` bytes of the answer.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from yarl import URL

from chatserver.config import WebhookSettings
from chatserver.webhooks.signing import signed_headers
from chatserver.webhooks.ssrf import AddressPolicy, BlockedAddress, GuardedResolver

log = logging.getLogger(__name__)

USER_AGENT = "chatserver-webhooks/1"


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt got back. status_code 0 means no HTTP response (see `error`)."""

    status_code: int
    response_body: str = ""
    error: str | None = None
    duration_ms: int = 0
    retry_after: str | None = None
    timed_out: bool = False
    # The SSRF guard stopped it before any connection: nothing was sent, nothing read.
    refused: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300


class WebhookSender:
    """Owns the HTTP client session; `send` never raises for the endpoint's failures."""

    def __init__(
        self, settings: WebhookSettings, *, resolver: AbstractResolver | None = None
    ) -> None:
        self.settings = settings
        self.policy = AddressPolicy(settings.allowed_networks)
        self._inner_resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.policy, self._inner_resolver),
            use_dns_cache=False,
            limit=max(self.settings.concurrency * 2, 10),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
            trust_env=False,
            auto_decompress=True,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self, url: str, webhook_id: str, body: bytes, secrets: Sequence[str]
    ) -> AttemptResult:
        reason = self.policy.check_url(url)
        if reason is not None:
            return AttemptResult(0, error=f"refused: callback_url {reason}", refused=True)
        headers = signed_headers(webhook_id, body, secrets)
        headers.update({"content-type": "application/json", "user-agent": USER_AGENT})
        started = time.monotonic()
        try:
            result = await self._post(url, body, headers)
        except TimeoutError:
            result = AttemptResult(0, error="timed out", timed_out=True)
        except BlockedAddress as exc:
            result = AttemptResult(0, error=f"refused: {exc}", refused=True)
        except aiohttp.ClientConnectorError as exc:
            result = _connector_error(exc)
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            result = AttemptResult(0, error=f"{type(exc).__name__}: {exc}"[:500])
        duration_ms = int((time.monotonic() - started) * 1000)
        return dataclasses.replace(result, duration_ms=duration_ms,
                                   error=result.error and redacted(result.error, url))

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> AttemptResult:
        assert self._session is not None, "WebhookSender.start() was not called"
        async with self._session.post(
            url, data=body, headers=headers, allow_redirects=False
        ) as resp:
            text = await _read_capped(resp, self.settings.response_body_max)
            return AttemptResult(
                resp.status, response_body=text, retry_after=resp.headers.get("Retry-After")
            )


def redacted(text: str, url: str) -> str:
    """`text` without `url`'s query string and user info, as given or as aiohttp renders them."""
    for fragment in sorted(_credential_fragments(url), key=len, reverse=True):
        text = text.replace(fragment, "")
    return text


def _credential_fragments(url: str) -> set[str]:
    fragments = set()
    try:
        parts, parsed = urlsplit(url), URL(url)
    except ValueError:
        return {url}
    if parts.query:
        fragments |= {"?" + parts.query, "?" + parsed.raw_query_string, "?" + parsed.query_string}
    userinfo = parts.netloc.rpartition("@")[0]
    if userinfo:
        fragments |= {userinfo + "@", f"{parsed.raw_user}:{parsed.raw_password}@"}
    return fragments


def _connector_error(exc: aiohttp.ClientConnectorError) -> AttemptResult:
    cause = exc.os_error
    if isinstance(cause, BlockedAddress):
        return AttemptResult(0, error=f"refused: {cause}", refused=True)
    return AttemptResult(0, error=f"connection failed: {cause}"[:500])


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> str:
    chunks: list[bytes] = []
    size = 0
    while size < cap:
        chunk = await resp.content.read(cap - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    # Postgres text cannot hold NUL characters. Replacements (3 bytes each) may not grow the text
    # past the cap, so cut it again in UTF-8 bytes.
    text = b"".join(chunks).decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    return text.encode()[:cap].decode("utf-8", errors="ignore")
