"""The chat page (static/) in a real headless Chromium against a server started by each test.

Two tabs and a REST client talk in one conversation; the page pages back through history, resumes
after the server restarts, renders message text as text and media URLs as media elements. A
screenshot of each scene is saved under test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, expect
from yarl import URL

from chatserver.app import create_app
from chatserver.appkeys import HUB
from chatserver.config import Settings
from tests.conftest import Api
from tests.localhost import REPO, free_port
from tests.system.browser_helpers import (
    WAIT_MS,
    ChatPage,
    Rest,
    page_url,
    png,
    until,
    wav,
)

INJECTION = "<img src=x onerror=alert(1)>"
JS_TYPES = ["text/javascript", "application/javascript"]  # both load as modules




def base_of(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def rest(server: TestServer, make_key: Any) -> AsyncIterator[Rest]:
    async with aiohttp.ClientSession() as session:
        yield Rest(session, base_of(server), await make_key("api"))


async def open_as(browser: Browser, rest: Rest, conversation_id: str, user: str) -> ChatPage:
    tab = await ChatPage.open(browser, page_url(rest.base, conversation_id,
                                                await rest.token(conversation_id, user)))
    await tab.wait_live()
    return tab


async def test_two_pages_and_rest_see_every_message_in_order(
    browser: Browser, rest: Rest
) -> None:
    conversation_id = await rest.conversation()
    for text in ("first", "second"):
        await rest.post(conversation_id, text)
    alice = await open_as(browser, rest, conversation_id, "alice")
    bob = await open_as(browser, rest, conversation_id, "bob")
    for tab in (alice, bob):
        await expect(tab.page.locator("#presence li")).to_have_text(
            ["alice", "bob"], timeout=WAIT_MS)
        await tab.expect_texts(["first", "second"])

    await bob.page.locator("#text").press_sequentially("hel")
    await expect(alice.page.locator("#typing")).to_have_text("bob is typing…", timeout=WAIT_MS)
    await expect(bob.page.locator("#typing")).to_have_text("")  # not about oneself

    await bob.send("hello from bob")
    await alice.expect_texts(["first", "second", "hello from bob"])
    await alice.send("hi bob\nhow are you?")
    await bob.expect_texts(["first", "second", "hello from bob", "hi bob\nhow are you?"])
    await rest.post(conversation_id, "a notice from the API", type="SYSTEM")
    texts = ["first", "second", "hello from bob", "hi bob\nhow are you?", "a notice from the API"]
    for tab in (alice, bob):
        await tab.expect_texts(texts)
        assert await tab.seqs() == [1, 2, 3, 4, 5]
        await expect(tab.page.locator("#pending > li")).to_have_count(0)
    # Acknowledged sends are marked on the sender's page only.
    mine = bob.page.locator("#messages > li[data-mine]")
    await expect(mine).to_have_count(1)
    await expect(mine.locator(".ack")).to_have_text("✓ stored")
    await expect(alice.page.locator("#messages > li[data-mine] .text")).to_have_text(
        ["hi bob\nhow are you?"])
    # A status change (message.updated) redraws the message in place on both pages.
    first = (await rest.call("GET", f"/conversations/{conversation_id}/messages?order=asc"))[0]
    await rest.call("PATCH", f"/conversations/{conversation_id}/messages/{first['id']}",
                    {"status": "FAILED"})
    for tab in (alice, bob):
        await expect(tab.page.locator('#messages > li[data-seq="1"] .status')).to_have_text(
            "failed", timeout=WAIT_MS)
        await tab.expect_texts(texts)
    await alice.screenshot("two-pages-alice.png")

    await bob.page.close()
    await expect(alice.page.locator("#presence li")).to_have_text(["alice"], timeout=WAIT_MS)
    assert alice.errors == [] and bob.errors == []


async def test_older_history_loads_on_scroll_up(browser: Browser, rest: Rest) -> None:
    conversation_id = await rest.conversation()
    for n in range(1, 121):
        await rest.post(conversation_id, f"message {n}")
    tab = await open_as(browser, rest, conversation_id, "reader")
    await expect(tab.page.locator("#messages > li")).to_have_count(50, timeout=WAIT_MS)
    assert await tab.seqs() == list(range(71, 121))
    log = tab.page.locator("#log")
    # The newest message is in view at the bottom.
    await expect(tab.page.locator("#messages > li").last).to_be_in_viewport()
    for expected in (100, 120):
        await log.evaluate("log => { log.scrollTop = 0; }")
        await expect(tab.page.locator("#messages > li")).to_have_count(expected, timeout=WAIT_MS)
    assert await tab.seqs() == list(range(1, 121))
    await expect(tab.page.locator("#older")).to_have_text("Beginning of the conversation")
    await expect(tab.page.locator("#older")).to_be_disabled()
    assert tab.errors == []


async def test_page_resumes_after_a_server_restart_and_shows_what_it_missed(
    browser: Browser, settings: Settings, make_key: Any, api: Api
) -> None:
    """The server goes away (closing the socket with 1001); messages posted meanwhile through
    another instance appear once the page has reconnected with since=<last seq>, each once."""
    port = free_port()
    first = TestServer(create_app(settings), host="127.0.0.1", port=port)
    await first.start_server()
    second = None
    async with aiohttp.ClientSession() as session:
        try:
            rest = Rest(session, base_of(first), await make_key("api"))
            conversation_id = await rest.conversation()
            await rest.post(conversation_id, "before the restart")
            tab = await open_as(browser, rest, conversation_id, "alice")
            await tab.expect_texts(["before the restart"])

            await first.close()
            await expect(tab.page.locator("#connection")).to_have_attribute(
                "data-state", "reconnecting", timeout=WAIT_MS)
            await expect(tab.page.locator("#banner")).to_be_visible()
            await api.post_message(conversation_id, "missed one")  # another instance
            await api.post_message(conversation_id, "missed two")
            await tab.send("written while offline")
            await expect(tab.page.locator("#pending > li")).to_have_attribute(
                "data-state", "sending")

            second = TestServer(create_app(settings), host="127.0.0.1", port=port)
            await second.start_server()
            await tab.wait_live()
            await expect(tab.page.locator("#banner")).to_be_hidden()
            texts = ["before the restart", "missed one", "missed two", "written while offline"]
            await tab.expect_texts(texts)
            await expect(tab.page.locator("#pending > li")).to_have_count(0, timeout=WAIT_MS)
            await rest.post(conversation_id, "after the restart")
            await tab.expect_texts([*texts, "after the restart"])
            assert await tab.seqs() == [1, 2, 3, 4, 5]
            assert any(url.endswith("?since=1") for url in tab.socket_urls), tab.socket_urls
            await tab.screenshot("after-restart.png")
            assert tab.errors == []
        finally:
            await first.close()
            if second is not None:
                await second.close()


async def test_page_reconnects_after_the_server_drops_its_socket(
    browser: Browser, server: TestServer, rest: Rest
) -> None:
    """A socket closed by a live server (4008, "too slow, resume with since") comes back by itself
    and catches up, whether what it missed arrives by replay or live."""
    conversation_id = await rest.conversation()
    await rest.post(conversation_id, "one")
    tab = await open_as(browser, rest, conversation_id, "alice")
    await tab.expect_texts(["one"])
    await server.app[HUB].shut_all(4008, "too slow, resume with since")
    await rest.post(conversation_id, "two")
    await tab.expect_texts(["one", "two"])
    await until(lambda: len(tab.socket_urls) == 2)
    assert tab.socket_urls[1].endswith("?since=1"), tab.socket_urls
    await tab.wait_live()
    await tab.send("three")
    await tab.expect_texts(["one", "two", "three"])
    assert await tab.seqs() == [1, 2, 3]


async def test_message_text_is_never_html(browser: Browser, rest: Rest) -> None:
    conversation_id = await rest.conversation()
    await rest.post(conversation_id, INJECTION)  # from history
    tab = await open_as(browser, rest, conversation_id, "alice")
    await rest.post(conversation_id, INJECTION, content_type="FILE",
                    filename="<b onmouseover=alert(2)>x")  # live, not a URL: text
    await rest.post(conversation_id, "javascript:alert(3)", content_type="IMAGE", filename="x.png")
    await tab.send(INJECTION)  # from the page itself
    await expect(tab.page.locator("#messages > li")).to_have_count(4, timeout=WAIT_MS)
    texts = tab.page.locator("#messages > li .text")
    await expect(texts).to_have_text([
        INJECTION, "<b onmouseover=alert(2)>x: " + INJECTION, "x.png: javascript:alert(3)",
        INJECTION,
    ])
    assert await tab.page.locator("#messages img, #messages a, #messages b").count() == 0
    await tab.page.locator("#messages > li .text").first.hover()
    assert tab.dialogs == []
    assert tab.errors == []


@pytest.fixture
async def media_host(aiohttp_server: Any) -> str:
    """A real HTTP server on 127.0.0.1 that serves the media the messages point at."""
    files = {"/cat.png": (png(240, 120, (230, 120, 40)), "image/png"),
             "/beep.wav": (wav(), "audio/wav"),
             "/report.pdf": (b"%PDF-1.4\n%%EOF\n", "application/pdf")}

    async def serve(request: web.Request) -> web.Response:
        body, content_type = files[request.path]
        return web.Response(body=body, content_type=content_type)

    app = web.Application()
    for path in files:
        app.router.add_get(path, serve)
    host = await aiohttp_server(app, host="127.0.0.1")
    return base_of(host)


async def test_media_messages_render_as_media_elements(
    browser: Browser, rest: Rest, media_host: str
) -> None:
    conversation_id = await rest.conversation()
    await rest.post(conversation_id, "look at these")
    await rest.post(conversation_id, f"{media_host}/cat.png", content_type="IMAGE",
                    filename="cat.png")
    tab = await open_as(browser, rest, conversation_id, "viewer")
    await rest.post(conversation_id, f"{media_host}/beep.wav", content_type="AUDIO",
                    filename="beep.wav")
    await rest.post(conversation_id, f"{media_host}/clip.webm", content_type="VIDEO",
                    filename="clip.webm")
    await rest.post(conversation_id, f"{media_host}/report.pdf", content_type="FILE",
                    filename="report.pdf", type="AGENT_OUTPUT")
    page = tab.page
    await expect(page.locator("#messages > li")).to_have_count(5, timeout=WAIT_MS)
    image = page.locator("#messages img.media")
    await expect(image).to_have_attribute("src", f"{media_host}/cat.png")
    await expect(image).to_have_attribute("alt", "cat.png")
    # It really loaded (the page's Content-Security-Policy lets http(s) media through).
    await page.wait_for_function("() => document.querySelector('img.media').naturalWidth === 240",
                                 timeout=WAIT_MS)
    await expect(page.locator("#messages audio.media")).to_have_attribute(
        "src", f"{media_host}/beep.wav")
    await page.wait_for_function("() => document.querySelector('audio.media').duration > 0",
                                 timeout=WAIT_MS)
    await expect(page.locator("#messages video.media")).to_have_attribute(
        "src", f"{media_host}/clip.webm")
    link = page.locator("#messages a.file")
    await expect(link).to_have_text("report.pdf")
    await expect(link).to_have_attribute("href", f"{media_host}/report.pdf")
    await expect(link).to_have_attribute("rel", "noopener noreferrer")
    await tab.screenshot("media.png")
    assert tab.errors == []


async def test_page_and_files_are_served_with_a_strict_policy(server: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(base_of(server) + "/") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            policy = resp.headers["Content-Security-Policy"]
            assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
            assert '<script type="module" src="/static/page.js">' in await resp.text()
        files = (("chat.js", JS_TYPES), ("page.js", JS_TYPES), ("chat.css", ["text/css"]))
        for name, types in files:
            async with session.get(f"{base_of(server)}/static/{name}") as resp:
                assert resp.status == 200 and resp.content_type in types
        outside = URL(base_of(server) + "/static/%2e%2e/config.py", encoded=True)
        async with session.get(outside) as resp:
            assert resp.status in (403, 404)
        async with session.get(base_of(server) + "/openapi.json") as resp:
            paths = (await resp.json())["paths"]
            assert "/" not in paths and not any(p.startswith("/static") for p in paths)


async def test_demo_command_prints_pages_that_open(
    browser: Browser, server: TestServer, database_url: str
) -> None:
    base = base_of(server)
    result = subprocess.run(
        [sys.executable, "-m", "chatserver", "demo", "--user", "ann", "--user", "ben",
         "--base-url", base],
        env={**os.environ, "CHATSERVER_DATABASE_URL": database_url}, capture_output=True,
        text=True, timeout=60, cwd=REPO, check=True,
    )
    urls = dict(re.findall(r"^\s+(\w+): (\S+)$", result.stdout, re.MULTILINE))
    assert set(urls) == {"ann", "ben"}
    assert all(url.startswith(base + "/#conversation=") for url in urls.values())
    ann = await ChatPage.open(browser, urls["ann"])
    await ann.wait_live()
    await expect(ann.page.locator("#me")).to_have_text("you are ann")
    await ann.send("hello, demo")
    await ann.expect_texts(["hello, demo"])
    await expect(ann.page.locator("#messages .author")).to_have_text(["ann"])


async def test_form_opens_a_conversation(browser: Browser, rest: Rest) -> None:
    conversation_id = await rest.conversation()
    await rest.post(conversation_id, "welcome")
    tab = await ChatPage.open(browser, rest.base + "/")
    await expect(tab.page.locator("#join")).to_be_visible()
    await tab.page.locator("#join-conversation").fill(conversation_id)
    await tab.page.locator("#join-token").fill(await rest.token(conversation_id, "formuser"))
    await tab.page.locator("#join button").click()
    await tab.wait_live()
    await tab.expect_texts(["welcome"])
    assert "#conversation=" in tab.page.url
    await tab.screenshot("form-opened.png")


async def test_a_bad_token_shows_refused(browser: Browser, rest: Rest) -> None:
    conversation_id = await rest.conversation()
    tab = await ChatPage.open(browser, page_url(rest.base, conversation_id, "not-a-token"))
    await expect(tab.page.locator("#connection")).to_have_attribute(
        "data-state", "refused", timeout=WAIT_MS)
    await expect(tab.page.locator("#problem")).to_contain_text("401")


async def test_a_refused_send_is_marked_failed(browser: Browser, rest: Rest) -> None:
    conversation_id = await rest.conversation()
    tab = await open_as(browser, rest, conversation_id, "alice")
    await tab.send("x" * 70_000)  # over [messages] max_content_bytes
    failed = tab.page.locator("#pending > li")
    await expect(failed).to_have_attribute("data-state", "failed", timeout=WAIT_MS)
    await expect(failed.locator(".ack")).to_contain_text("not sent: ")
    await expect(tab.page.locator("#problem")).to_be_visible()
    await tab.screenshot("send-failed.png")
    await tab.send("this one is fine")
    await tab.expect_texts(["this one is fine"])
    await failed.locator(".dismiss").click()
    await expect(failed).to_have_count(0)
    await expect(tab.page.locator("#connection")).to_have_attribute("data-state", "live")


async def test_page_keeps_one_copy_of_each_seq_in_order(browser: Browser, rest: Rest) -> None:
    """Frames delivered twice or out of order (as a buggy proxy might) still draw each seq once,
    in seq order; a newer copy of a message replaces the old one in place."""
    conversation_id = await rest.conversation()
    for text in ("one", "two", "three"):
        await rest.post(conversation_id, text)
    tab = await open_as(browser, rest, conversation_id, "alice")
    await tab.expect_texts(["one", "two", "three"])
    await tab.page.evaluate("""() => {
        const [one, two] = window.chat.ordered();
        const at = (m, seq, content) => ({...m, seq, content, id: String(seq).padStart(32, "0")});
        window.chat.onFrame({type: "message", message: two});
        window.chat.onFrame({type: "message", message: at(two, 9, "nine")});
        window.chat.onFrame({type: "message", message: at(two, 7, "seven")});
        window.chat.onFrame({type: "message", message: at(two, 9, "nine")});
        window.chat.onFrame({type: "message.updated",
                             message: {...one, content: "one (edited)", updated_at: "9999"}});
    }""")
    await tab.expect_texts(["one (edited)", "two", "three", "seven", "nine"])
    assert await tab.seqs() == [1, 2, 3, 7, 9]


async def test_a_streamed_message_grows_then_shows_its_final_text(
    browser: Browser, rest: Rest
) -> None:
    conversation_id = await rest.conversation()
    await rest.post(conversation_id, "what is a stream?")
    tab = await open_as(browser, rest, conversation_id, "reader")
    answer = await rest.post(conversation_id, "", stream=True, type="AGENT_OUTPUT")
    deltas = f"/conversations/{conversation_id}/messages/{answer['id']}/deltas"
    item = tab.page.locator(f'#messages > li[data-seq="{answer["seq"]}"]')
    await expect(item).to_have_attribute("data-stream", "open", timeout=WAIT_MS)
    shown = ""
    for index, text in enumerate(["One ", "message ", "that ", "grows"]):
        await rest.call("POST", deltas, {"deltas": [{"index": index, "text": text}]})
        shown += text
        await expect(item.locator(".text")).to_have_text(shown + "▍", timeout=WAIT_MS)
    await expect(item.locator(".caret")).to_have_count(1)
    await tab.screenshot("stream-open.png")
    await rest.call("POST", f"/conversations/{conversation_id}/messages/{answer['id']}/complete",
                    {"content": "One message that grew."})
    await expect(item).to_have_attribute("data-stream", "complete", timeout=WAIT_MS)
    await tab.expect_texts(["what is a stream?", "One message that grew."])
    await expect(item.locator(".caret")).to_have_count(0)
    # An aborted one keeps its text and is marked.
    stopped = await rest.post(conversation_id, "half", stream=True, type="AGENT_OUTPUT")
    await rest.call("POST", f"/conversations/{conversation_id}/messages/{stopped['id']}/abort",
                    {"reason": "cancelled"})
    mark = tab.page.locator(f'#messages > li[data-seq="{stopped["seq"]}"] .status')
    await expect(mark).to_have_text("stopped: cancelled", timeout=WAIT_MS)
    await tab.screenshot("stream-complete.png")
    assert tab.errors == []


async def test_authors_kinds_and_seen_by(browser: Browser, rest: Rest) -> None:
    """An agent's messages look different from a person's; "seen by" follows the others' reads."""
    conversation_id = await rest.conversation()
    agent = await rest.agent(conversation_id, "helper", "Helper Bot")
    alice = await open_as(browser, rest, conversation_id, "alice")
    await alice.send("hello, anyone?")
    await alice.expect_texts(["hello, anyone?"])
    await agent.post(conversation_id, "Hi alice, I am a bot.")
    await alice.expect_texts(["hello, anyone?", "Hi alice, I am a bot."])
    items = alice.page.locator("#messages > li")
    await expect(items.nth(0)).to_have_attribute("data-author-kind", "user")
    await expect(items.nth(1)).to_have_attribute("data-author-kind", "agent")
    await expect(items.nth(1).locator(".author")).to_have_text("Helper Bot")
    await expect(items.nth(1).locator(".badge.kind")).to_have_text("agent")
    assert await items.nth(0).evaluate("li => getComputedStyle(li).backgroundColor") != (
        await items.nth(1).evaluate("li => getComputedStyle(li).backgroundColor"))
    # bob opens the page (and so reads everything): alice sees it under the last message.
    bob = await open_as(browser, rest, conversation_id, "bob")
    await bob.expect_texts(["hello, anyone?", "Hi alice, I am a bot."])
    await expect(items.nth(1).locator(".seen")).to_have_text("seen by bob", timeout=WAIT_MS)
    await expect(items.nth(0).locator(".seen")).to_have_count(0)
    # A new message: bob's open page reads it, then the agent marks it read over REST.
    await alice.send("great")
    await expect(items.nth(2).locator(".seen")).to_have_text("seen by bob", timeout=WAIT_MS)
    await expect(items.nth(1).locator(".seen")).to_have_count(0)
    await agent.call("POST", f"/conversations/{conversation_id}/participants/helper/read",
                     {"seq": 3})
    await expect(items.nth(2).locator(".seen")).to_have_text("seen by bob, helper",
                                                             timeout=WAIT_MS)
    await alice.screenshot("authors-and-seen.png")
    assert alice.errors == [] and bob.errors == []
