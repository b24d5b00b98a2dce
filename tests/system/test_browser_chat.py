"""The chat page as people use it (issue 20.5): own messages after a reload, typing that ends with
the message, the empty state, the refused-token screen, the reconnecting banner, retrying a failed
send, dark mode, 360 px and the People toggle, accessible names, day separators and author groups,
broken images, sanitized markdown, an axe-core check and the screenshots in docs/. Real headless
Chromium against a real server, as in test_browser.py (whose fixtures these tests share)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from playwright.async_api import Browser, WebSocket, expect

from tests.system.browser_helpers import ARTIFACTS, WAIT_MS, ChatPage, Rest, page_url, until
from tests.system.test_browser import open_as, rest

__all__ = ["rest"]  # the fixture shared with test_browser.py (browser and server: conftest.py)


async def test_own_messages_stay_mine_after_a_reload(browser: Browser, rest: Rest) -> None:
    conversation_id = await rest.conversation()
    token = await rest.token(conversation_id, "alice")
    tab = await ChatPage.open(browser, page_url(rest.base, conversation_id, token))
    await tab.wait_live()
    await tab.send("mine")
    await rest.post(conversation_id, "not mine")
    await tab.expect_texts(["mine", "not mine"])
    await tab.page.reload()
    await tab.wait_live()
    await tab.expect_texts(["mine", "not mine"])
    mine = tab.page.locator("#messages > li[data-mine]")
    await expect(mine).to_have_count(1)
    await expect(mine.locator(".text")).to_have_text("mine")
    assert tab.errors == []


async def test_typing_ends_when_that_users_message_arrives(browser: Browser, rest: Rest) -> None:
    conversation_id = await rest.conversation()
    alice = await open_as(browser, rest, conversation_id, "alice")
    bob = await open_as(browser, rest, conversation_id, "bob")
    await bob.page.locator("#text").press_sequentially("hi")
    await expect(alice.page.locator("#typing")).to_have_text("bob is typing…", timeout=WAIT_MS)
    await bob.page.locator("#text").press("Enter")
    await alice.expect_texts(["hi"])
    # Cleared by the message itself, well before the indicator's own 4 s timeout.
    assert await alice.page.locator("#typing").text_content() == ""


async def test_an_empty_conversation_says_so(browser: Browser, rest: Rest) -> None:
    conversation_id = await rest.conversation()
    tab = await open_as(browser, rest, conversation_id, "alice")
    await expect(tab.page.locator("#empty")).to_be_visible(timeout=WAIT_MS)
    await expect(tab.page.locator("#empty")).to_contain_text("No messages yet")
    await tab.send("first")
    await tab.expect_texts(["first"])
    await expect(tab.page.locator("#empty")).to_be_hidden()


async def test_a_bad_token_shows_a_screen_saying_what_to_do(
    browser: Browser, rest: Rest
) -> None:
    conversation_id = await rest.conversation()
    tab = await ChatPage.open(browser, page_url(rest.base, conversation_id, "not-a-token"))
    screen = tab.page.locator("#refused")
    await expect(screen).to_be_visible(timeout=WAIT_MS)
    await expect(screen).to_contain_text("Ask whoever gave you this link for a new one")
    await expect(tab.page.locator("#refused-detail")).to_contain_text("401")
    await expect(tab.page.locator("#chat")).to_be_hidden()
    await tab.page.locator("#refused-other").click()
    await expect(tab.page.locator("#join")).to_be_visible(timeout=WAIT_MS)


async def test_an_expired_token_on_the_socket_shows_the_screen(
    browser: Browser, rest: Rest
) -> None:
    """A socket closed with 4401 (as when the token expires before a reconnect)."""
    conversation_id = await rest.conversation()
    tab = await open_as(browser, rest, conversation_id, "alice")
    await tab.page.evaluate("() => window.chat.onClose(window.chat.socket, {code: 4401})")
    await expect(tab.page.locator("#refused")).to_be_visible(timeout=WAIT_MS)
    await expect(tab.page.locator("#refused-detail")).to_contain_text("expired")


async def test_a_failed_send_can_be_retried_with_the_same_client_id(
    browser: Browser, rest: Rest
) -> None:
    conversation_id = await rest.conversation()
    tab = await open_as(browser, rest, conversation_id, "alice")
    sent: list[dict[str, object]] = []

    def watch(ws: WebSocket) -> None:
        ws.on("framesent", lambda payload: sent.append(json.loads(payload)))

    tab.page.on("websocket", watch)
    await tab.page.reload()  # so the watched socket is the page's
    await tab.wait_live()
    await tab.send("x" * 70_000)  # over [messages] max_content_bytes: refused
    failed = tab.page.locator("#pending > li")
    await expect(failed).to_have_attribute("data-state", "failed", timeout=WAIT_MS)
    await failed.locator(".retry").click()
    await until(lambda: sum(frame.get("type") == "message" for frame in sent) == 2)
    first, second = [frame for frame in sent if frame.get("type") == "message"]
    assert first["client_id"] == second["client_id"]
    await expect(failed).to_have_attribute("data-state", "failed", timeout=WAIT_MS)
    await expect(failed).to_have_count(1)


def luminance(css_rgb: str) -> float:
    """Relative brightness 0..1 of a computed `rgb(r, g, b)` colour."""
    r, g, b = (float(part) for part in re.findall(r"[\d.]+", css_rgb)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


async def test_dark_mode_follows_the_system(browser: Browser, rest: Rest) -> None:
    conversation_id = await rest.conversation()
    await rest.post(conversation_id, "in the dark")
    tab = await open_as(browser, rest, conversation_id, "alice")
    style = "el => [getComputedStyle(el).backgroundColor, getComputedStyle(el).color]"
    light_bg, light_ink = await tab.page.locator("html").evaluate(style)
    assert luminance(light_bg) > 0.8 > 0.3 > luminance(light_ink)
    await tab.page.emulate_media(color_scheme="dark")
    dark_bg, dark_ink = await tab.page.locator("html").evaluate(style)
    assert luminance(dark_bg) < 0.2 < 0.7 < luminance(dark_ink)
    item_bg = await tab.page.locator("#messages > li").first.evaluate(
        "li => getComputedStyle(li).backgroundColor")
    assert luminance(item_bg) < 0.3


async def test_a_360px_screen_fits_and_reaches_presence(browser: Browser, rest: Rest) -> None:
    conversation_id = await rest.conversation()
    await rest.post(conversation_id, "a long line " * 20)
    tab = await open_as(browser, rest, conversation_id, "alice")
    await tab.page.set_viewport_size({"width": 360, "height": 640})
    width = await tab.page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 360
    presence = tab.page.locator("#presence")
    await expect(presence).to_be_hidden()
    toggle = tab.page.locator("#people-toggle")
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    await toggle.focus()
    await tab.page.keyboard.press("Enter")  # keyboard, not only touch
    await expect(presence.locator("li")).to_have_text(["alice"], timeout=WAIT_MS)
    await expect(presence).to_be_visible()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    await tab.page.keyboard.press("Escape")
    await expect(presence).to_be_hidden()
    await expect(toggle).to_be_focused()
    # The composer is usable at this width: the text box keeps most of it.
    text_box = await tab.page.locator("#text").bounding_box()
    assert text_box is not None and text_box["width"] >= 180


async def test_the_kind_selector_is_a_small_part_of_the_composer(
    browser: Browser, rest: Rest
) -> None:
    conversation_id = await rest.conversation()
    tab = await open_as(browser, rest, conversation_id, "alice")
    composer = await tab.page.locator("#composer").bounding_box()
    kind = await tab.page.locator("#kind").bounding_box()
    assert composer is not None and kind is not None
    assert kind["width"] < composer["width"] * 0.12, (kind, composer)


async def test_controls_have_accessible_names(browser: Browser, rest: Rest) -> None:
    conversation_id = await rest.conversation()
    tab = await open_as(browser, rest, conversation_id, "alice")
    for role, name in [("log", "Message history"), ("textbox", "Message"),
                       ("combobox", "Message kind"), ("button", "Send message"),
                       ("list", "People present")]:
        await expect(tab.page.get_by_role(role, name=name, exact=True)).to_have_count(1)
    # From the message box, Tab reaches the send button.
    await tab.page.locator("#text").focus()
    await tab.page.keyboard.press("Tab")
    await expect(tab.page.locator("#send")).to_be_focused()


async def test_days_are_separated_and_one_authors_run_is_grouped(
    browser: Browser, rest: Rest
) -> None:
    conversation_id = await rest.conversation()
    for text in ("one", "two"):
        await rest.post(conversation_id, text)
    tab = await open_as(browser, rest, conversation_id, "alice")
    await tab.send("three")
    await tab.expect_texts(["one", "two", "three"])
    # Two messages from an earlier day, as if they had come from history.
    await tab.page.evaluate("""() => {
        const [one] = window.chat.ordered();
        const at = (seq, iso) => ({...one, seq, content: `old ${seq}`, created_at: iso,
                                   updated_at: iso, id: String(seq).padStart(32, "0")});
        window.chat.accept(at(-2, "2024-03-01T09:00:00Z"), true);
        window.chat.accept(at(-1, "2024-03-01T09:01:00Z"), true);
    }""")
    items = tab.page.locator("#messages > li")
    await expect(items).to_have_count(5, timeout=WAIT_MS)
    days = await items.evaluate_all("items => items.map(li => li.dataset.day ?? null)")
    grouped = await items.evaluate_all("items => items.map(li => li.dataset.grouped ?? null)")
    assert days[0] is not None and "2024" in days[0] and days[2] == "Today", days
    assert [days[1], days[3], days[4]] == [None, None, None], days
    assert grouped == [None, "true", None, "true", None], grouped  # "three" is alice's
    separator = await items.nth(2).evaluate(
        "li => getComputedStyle(li, '::before').content")
    assert separator == '"Today"'
    await expect(items.nth(1).locator(".author")).to_be_hidden()
    await expect(items.nth(4).locator(".author")).to_be_visible()
    await tab.screenshot("days-and-groups.png")


async def test_a_broken_image_shows_a_fallback_link(browser: Browser, rest: Rest) -> None:
    conversation_id = await rest.conversation()
    missing = f"{rest.base}/static/no-such-image.png"
    await rest.post(conversation_id, missing, content_type="IMAGE", filename="holiday.png")
    tab = await open_as(browser, rest, conversation_id, "alice")
    fallback = tab.page.locator("#messages a.file.broken")
    await expect(fallback).to_have_text("holiday.png (image could not be loaded)",
                                        timeout=WAIT_MS)
    await expect(fallback).to_have_attribute("href", missing)
    assert await tab.page.locator("#messages img").count() == 0


MARKDOWN_ATTACKS = [
    "<script>window.pwned = 'script'</script>",
    '<img src=x onerror="window.pwned = \'img\'">',
    "[click me](javascript:window.pwned='link')",
    "<a href=\"javascript:window.pwned='a'\">raw link</a>",
]


async def test_markdown_and_links_are_rendered_and_sanitized(
    browser: Browser, rest: Rest
) -> None:
    conversation_id = await rest.conversation()
    await rest.post(conversation_id, "**bold**, `code` and [a link](https://example.com/x)")
    for attack in MARKDOWN_ATTACKS[:2]:
        await rest.post(conversation_id, attack)  # from history
    tab = await open_as(browser, rest, conversation_id, "alice")
    for attack in MARKDOWN_ATTACKS[2:]:
        await rest.post(conversation_id, attack)  # live
    await expect(tab.page.locator("#messages > li")).to_have_count(5, timeout=WAIT_MS)
    first = tab.page.locator("#messages > li").first
    await expect(first.locator("strong")).to_have_text("bold")
    await expect(first.locator("code")).to_have_text("code")
    link = first.locator("a")
    await expect(link).to_have_attribute("href", "https://example.com/x")
    await expect(link).to_have_attribute("target", "_blank")
    await expect(link).to_have_attribute("rel", "noopener noreferrer nofollow")
    # Raw HTML is shown as text; nothing from it is an element.
    texts = tab.page.locator("#messages > li .text")
    await expect(texts.nth(1)).to_have_text(MARKDOWN_ATTACKS[0])
    await expect(texts.nth(2)).to_have_text(MARKDOWN_ATTACKS[1])
    await expect(texts.nth(4)).to_have_text(MARKDOWN_ATTACKS[3])
    assert await tab.page.locator("#messages script, #messages img").count() == 0
    # A javascript: link keeps its words but is no link anywhere.
    assert await tab.page.locator("#messages a[href^='javascript' i]").count() == 0
    await expect(texts.nth(3)).to_have_text("click me")
    await texts.nth(3).locator("a").click()
    await texts.nth(4).click()
    assert await tab.page.evaluate("() => window.pwned") is None
    assert tab.dialogs == [] and tab.errors == []
    await tab.screenshot("markdown.png")


AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


async def axe_findings(tab: ChatPage) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now (rule: nodes)."""
    if not await tab.page.evaluate("() => 'axe' in window"):
        await tab.page.add_script_tag(path=str(AXE))
    result = await tab.page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS)
    found = [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}"
            for v in result["violations"] if v["impact"] in ("serious", "critical")]
    return found


async def test_axe_finds_nothing_serious(browser: Browser, rest: Rest) -> None:
    """The form, the chat (light and dark, desktop and 360 px, with a failed send) and the
    refused screen. axe-core is injected as a script, so this page alone runs without its CSP."""
    conversation_id = await rest.conversation()
    await rest.call("PUT", f"/conversations/{conversation_id}/participants/helper",
                    {"kind": "agent", "name": "Helper Bot"}, 201)
    await rest.post(conversation_id, "**Welcome**, see [the docs](https://example.com/docs)")
    await rest.post(conversation_id, "a notice", type="SYSTEM")
    form = await ChatPage.open(browser, rest.base + "/", bypass_csp=True)
    assert await axe_findings(form) == []
    token = await rest.token(conversation_id, "alice")
    tab = await ChatPage.open(browser, page_url(rest.base, conversation_id, token),
                              bypass_csp=True)
    await tab.wait_live()
    await tab.send("hello")
    await tab.send("x" * 70_000)  # refused: a failed row with retry and dismiss
    await expect(tab.page.locator("#pending > li")).to_have_attribute(
        "data-state", "failed", timeout=WAIT_MS)
    await tab.expect_texts(["Welcome, see the docs", "a notice", "hello"])
    assert await axe_findings(tab) == []
    await tab.page.emulate_media(color_scheme="dark")
    assert await axe_findings(tab) == []
    await tab.page.set_viewport_size({"width": 360, "height": 640})
    await tab.page.locator("#people-toggle").click()
    assert await axe_findings(tab) == []
    refused = await ChatPage.open(browser, page_url(rest.base, conversation_id, "bad"),
                                  bypass_csp=True)
    await expect(refused.page.locator("#refused")).to_be_visible(timeout=WAIT_MS)
    assert await axe_findings(refused) == []


SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


async def test_screenshots_for_the_docs(browser: Browser, rest: Rest) -> None:
    """The pictures in docs/browser.md: a small conversation at desktop and phone width, light and
    dark. They land in test-artifacts/; with UPDATE_DOCS_SCREENSHOTS=1, in docs/screenshots/
    (then commit them)."""
    conversation_id = await rest.conversation()
    agent = await rest.agent(conversation_id, "helper", "Helper Bot")
    bob = await open_as(browser, rest, conversation_id, "bob")
    alice = await open_as(browser, rest, conversation_id, "alice")
    await bob.send("Morning! Did the deploy go out?")
    await bob.send("The dashboard looks quiet.")
    await agent.post(conversation_id, "Yes: **v2.4.1** is live since 08:12.\n\n"
                     "- 0 errors in the last hour\n- p95 latency 41 ms\n\n"
                     "Release notes: [changelog](https://example.com/changelog)")
    await alice.send("Thanks both, closing the ticket.")
    await alice.expect_texts([
        "Morning! Did the deploy go out?", "The dashboard looks quiet.",
        "Yes: v2.4.1 is live since 08:12.\n\n0 errors in the last hour\np95 latency 41 ms\n\n"
        "Release notes: changelog",
        "Thanks both, closing the ticket.",
    ])
    out = SCREENSHOTS if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1" else ARTIFACTS
    out.mkdir(parents=True, exist_ok=True)
    page = alice.page
    shots = []
    for name, size, scheme in [("desktop", (1000, 640), "light"),
                               ("desktop-dark", (1000, 640), "dark"),
                               ("mobile", (360, 740), "light")]:
        await page.set_viewport_size({"width": size[0], "height": size[1]})
        await page.emulate_media(color_scheme=scheme)
        await page.locator("#text").blur()
        shots.append(out / f"chat-{name}.png")
        await page.screenshot(path=str(shots[-1]))
    assert all(shot.stat().st_size > 0 for shot in shots)
