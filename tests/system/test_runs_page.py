"""The chat page's runs and actions (issue 17) in a real headless Chromium: the run state under the
conversation (working…, waiting for you, failed), the Stop button that cancels, action prompts as
buttons and a small form, and who answered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, expect

from tests.system.browser_helpers import WAIT_MS, ChatPage, Rest, page_url


@pytest.fixture
async def rest(server: TestServer, make_key: Any) -> AsyncIterator[Rest]:
    async with aiohttp.ClientSession() as session:
        yield Rest(session, str(server.make_url("")).rstrip("/"), await make_key("agent"))


async def test_run_state_stop_and_answers(browser: Browser, rest: Rest) -> None:
    cid = await rest.conversation()
    runs = f"/conversations/{cid}/runs"
    run = await rest.call("POST", runs, {"agent": "helper"}, 201)
    await rest.call("PATCH", f"{runs}/{run['id']}", {"status": "running", "activity": "searching"})
    tab = await ChatPage.open(browser, page_url(rest.base, cid, await rest.token(cid, "alice")))
    await tab.wait_live()
    state = tab.page.locator("#run .run-state")
    await expect(state).to_have_text("helper: working… (searching)", timeout=WAIT_MS)

    asked = await rest.post(cid, "May I send the report?", type="AGENT_OUTPUT", run_id=run["id"],
                            action={"kind": "confirm", "prompt": "Send it?"})
    await expect(state).to_have_text("helper: waiting for you", timeout=WAIT_MS)
    item = tab.page.locator(f'#messages > li[data-seq="{asked["seq"]}"]')
    await expect(item.locator(".action .prompt")).to_have_text("Send it?", timeout=WAIT_MS)
    await item.locator('button[data-option="yes"]').click()
    await expect(item.locator(".answered")).to_have_text("Yes — answered by alice",
                                                         timeout=WAIT_MS)
    await expect(item.locator("button")).to_have_count(0)
    answered = await rest.call("GET", f"/conversations/{cid}/messages")
    assert answered[0]["action"]["answer"] == {"option": "yes"}

    await rest.call("PATCH", f"{runs}/{run['id']}", {"status": "running"})
    form = await rest.post(cid, "How many copies?", type="AGENT_OUTPUT", run_id=run["id"], action={
        "kind": "form", "prompt": "Copies",
        "schema": {"type": "object", "required": ["copies"],
                   "properties": {"copies": {"type": "integer", "minimum": 1}}}})
    form_item = tab.page.locator(f'#messages > li[data-seq="{form["seq"]}"]')
    await form_item.locator('input[name="copies"]').fill("3")
    await form_item.locator('button[type="submit"]').click()
    await expect(form_item.locator(".answered")).to_have_text('copies: 3 — answered by alice',
                                                              timeout=WAIT_MS)

    await rest.call("PATCH", f"{runs}/{run['id']}", {"status": "running"})
    await expect(state).to_have_text("helper: working… (searching)", timeout=WAIT_MS)
    await tab.page.locator("#run .stop").click()
    await expect(state).to_have_text("helper: working… (searching) stopping…", timeout=WAIT_MS)
    assert (await rest.call("GET", f"{runs}/{run['id']}"))["cancel_requested_at"] is not None
    await rest.call("PATCH", f"{runs}/{run['id']}", {"status": "cancelled"})
    await expect(tab.page.locator("#run")).to_be_hidden(timeout=WAIT_MS)

    failing = await rest.call("POST", runs, {"agent": "helper"}, 201)
    await rest.call("PATCH", f"{runs}/{failing['id']}", {"status": "running"})
    await rest.call("PATCH", f"{runs}/{failing['id']}", {
        "status": "failed", "error": {"code": "tool", "message": "the search API is down"}})
    await expect(state).to_have_text("helper: failed: the search API is down", timeout=WAIT_MS)
    await tab.screenshot("runs-page.png")
    assert tab.errors == []
