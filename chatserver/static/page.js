// page.js: the chat page served at /. It reads #conversation=<id>&token=<token> (or the form),
// and draws what ChatClient (chat.js) reports. Message data only ever goes into textContent,
// attributes of media elements (after an http(s) check) or link hrefs, and text messages through
// markdown.js (raw HTML shown as text, the result sanitized by DOMPurify): never into innerHTML.
import { ChatClient, mediaUrl } from "./chat.js";
import { renderMarkdown } from "./markdown.js";
import { RunPanel, actionBody } from "./runs.js";

const $ = (id) => document.getElementById(id);
const STICK_TO_BOTTOM_PX = 80;
const TYPING_SHOWN_MS = 4000;
const GROUP_GAP_MS = 5 * 60 * 1000; // one author's messages closer than this share one header
const DAY_MS = 24 * 60 * 60 * 1000;
const PENDING_LABELS = { sending: "waiting to send…", sent: "sending…", failed: "not sent" };
const STATE_LABELS = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…",
                       refused: "refused", closed: "not connected" };

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function shortTime(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** "Today", "Yesterday" or the date: the label of the separator before a day's first message. */
function dayLabel(date) {
  const midnight = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  const days = Math.round((midnight(new Date()) - midnight(date)) / DAY_MS);
  if (days === 0) return "Today";
  if (days === 1) return "Yesterday";
  return date.toLocaleDateString([], { weekday: "short", day: "numeric", month: "long", year: "numeric" });
}

/** An image that fails to load becomes a link saying so (never a broken-image icon). */
function imageFallback(img, name, url) {
  img.addEventListener("error", () => {
    const link = el("a", "file broken", `${name} (image could not be loaded)`);
    link.href = url;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    img.replaceWith(link);
  }, { once: true });
}

function mediaBody(message, url) {
  const name = message.filename || url;
  switch (message.content_type) {
    case "IMAGE": {
      const img = el("img", "media");
      img.alt = name;
      img.loading = "lazy";
      img.referrerPolicy = "no-referrer";
      imageFallback(img, name, url);
      img.src = url;
      return img;
    }
    case "VIDEO":
    case "AUDIO": {
      const media = el(message.content_type === "VIDEO" ? "video" : "audio", "media");
      media.controls = true;
      media.preload = "metadata";
      media.src = url;
      media.title = name;
      return media;
    }
    default: {
      const link = el("a", "file", name);
      link.href = url;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      return link;
    }
  }
}

/** A text message as sanitized markdown (markdown.js); one still streaming stays plain text
 * until it completes, so half-written markup does not flicker. */
function markdownBody(message) {
  const body = el("div", "text markdown");
  body.append(renderMarkdown(message.content));
  return body;
}

function messageBody(message) {
  const url = mediaUrl(message);
  if (url) return mediaBody(message, url);
  if (message.content_type === "TEXT" && message.stream?.state !== "open") return markdownBody(message);
  const body = el("div", "text", message.content);
  if (message.content_type !== "TEXT" && message.filename) body.prepend(el("span", "filename", `${message.filename}: `));
  return body;
}

function messageItem(message, mine, answer) {
  const item = el("li", "message");
  item.dataset.seq = String(message.seq);
  item.dataset.type = message.type;
  item.dataset.contentType = message.content_type;
  if (mine) item.dataset.mine = "true";
  const author = message.author ?? { name: message.created_by, kind: "integration" };
  item.dataset.authorKind = author.kind;
  const meta = el("div", "meta");
  meta.append(el("span", "author", author.name));
  if (author.kind !== "user") meta.append(el("span", "badge kind", author.kind));
  const time = el("time", "time", shortTime(message.created_at));
  time.dateTime = message.created_at;
  meta.append(time);
  if (message.status === "FAILED" || message.status === "PROCESSING") meta.append(el("span", "badge status", message.status.toLowerCase()));
  if (mine) meta.append(el("span", "ack", "✓ stored"));
  const body = messageBody(message);
  const stream = message.stream;
  if (stream) {
    item.dataset.stream = stream.state; // open: it grows as the agent writes
    if (stream.state === "open") body.append(el("span", "caret", "▍"));
    if (stream.state === "aborted") meta.append(el("span", "badge status", stream.reason ? `stopped: ${stream.reason}` : "stopped"));
  }
  item.append(meta, body);
  if (message.action) item.append(actionBody(message, answer));
  return item;
}

class ChatPage {
  constructor(client) {
    this.client = client;
    this.log = $("log");
    this.list = $("messages");
    this.pendingList = $("pending");
    this.mine = new Set(); // client_ids this page sent
    this.typers = new Map(); // user -> timer
    this.reads = new Map(); // participant (not this user) -> read horizon
  }

  start() {
    const c = this.client;
    c.addEventListener("message", (e) => this.onMessage(e.detail));
    c.addEventListener("pending", (e) => this.onPending(e.detail.pending));
    c.addEventListener("presence", (e) => this.showPresence(e.detail.members));
    c.addEventListener("typing", (e) => this.onTyping(e.detail.user));
    c.addEventListener("read", (e) => this.onRead(e.detail));
    c.addEventListener("state", (e) => { if (e.detail.state === "live") this.markRead(); });
    document.addEventListener("visibilitychange", () => this.markRead());
    c.addEventListener("state", (e) => this.showState(e.detail));
    c.addEventListener("state", (e) => this.showBanner(e.detail.state));
    c.addEventListener("history", (e) => this.showHistoryEnd(e.detail.hasMore));
    c.addEventListener("history", () => this.showEmpty());
    c.addEventListener("error", (e) => this.showProblem(e.detail.frame.detail));
    this.runPanel = new RunPanel($("run"), c, (text) => this.showProblem(text));
    c.addEventListener("run", () => this.runPanel.show());
    this.answer = (messageId, body) => c.answer(messageId, body).catch((err) => {
      this.showProblem(err.message);
      throw err;
    });
    this.log.addEventListener("scroll", () => { if (this.log.scrollTop < 40) this.older(); });
    $("older").addEventListener("click", () => this.older());
    $("composer").addEventListener("submit", (e) => { e.preventDefault(); this.send(); });
    $("text").addEventListener("input", () => c.typing());
    $("text").addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); this.send(); }
    });
    this.startPeopleToggle();
    $("me").textContent = c.user ? `you are ${c.user}` : "";
    $("conversation").textContent = c.conversationId;
    c.start().then(() => this.fill(), (err) => this.fail(err));
  }

  /** Load older pages until the log can scroll (or the beginning is reached). */
  async fill() {
    this.scrollToBottom();
    while (this.client.hasMore && this.log.scrollHeight <= this.log.clientHeight) {
      if (!(await this.older())) return;
    }
  }

  /** One older page; false when there is none or it failed. */
  async older() {
    if (!this.client.hasMore) return false;
    try {
      await this.client.loadOlder();
      return true;
    } catch (err) {
      this.showProblem(err.message);
      return false;
    }
  }

  send() {
    const text = $("text").value.trim();
    if (!text) return;
    const kind = $("kind").value;
    const options = { contentType: kind };
    if (kind !== "TEXT") options.filename = decodeURIComponent(text.split(/[?#]/)[0].split("/").pop() || "file");
    this.mine.add(this.client.send(text, options));
    $("text").value = "";
    $("kind").value = "TEXT";
  }

  onMessage({ message, older }) {
    const atBottom = this.nearBottom();
    const heightBefore = this.log.scrollHeight;
    const mine = this.isMine(message);
    const item = messageItem(message, mine, this.answer);
    this.clearTyping(message);
    item.dataset.authorId = message.author?.id ?? message.created_by;
    const existing = this.list.querySelector(`li[data-seq="${message.seq}"]`);
    if (existing) existing.replaceWith(item);
    else this.list.insertBefore(item, this.nextItem(message.seq));
    this.markGroup(item);
    if (older) this.log.scrollTop += this.log.scrollHeight - heightBefore; // keep the view still
    else if (atBottom || mine) this.scrollToBottom();
    this.showSeen();
    this.showEmpty();
    if (!older) this.markRead();
  }

  /** Sent by this page's participant: by the author's id against the token's `sub`, so it still
   * holds after a reload (the client ids of this page's own sends cover API keys, which have no
   * `sub`). */
  isMine(message) {
    const me = this.client.user;
    return (me !== null && message.author?.id === me) || this.mine.has(message.client_id);
  }

  /** A message from someone who was typing ends their "is typing". */
  clearTyping(message) {
    const user = message.author?.id;
    if (!user || !this.typers.has(user)) return;
    clearTimeout(this.typers.get(user));
    this.typers.delete(user);
    this.showTyping();
  }

  /** Date separators and author groups, for `item` and the item after it (whose neighbour it now
   * is): a day's first message carries data-day (chat.css draws the separator); one author's
   * messages of one type closer than GROUP_GAP_MS are data-grouped (their header is hidden). */
  markGroup(item) {
    for (const node of [item, item.nextElementSibling]) {
      if (!node) continue;
      const prev = node.previousElementSibling;
      const at = new Date(node.querySelector("time").dateTime);
      const prevAt = prev ? new Date(prev.querySelector("time").dateTime) : null;
      const day = dayLabel(at);
      const newDay = !prev || dayLabel(prevAt) !== day;
      if (newDay) node.dataset.day = day;
      else delete node.dataset.day;
      const grouped = !newDay && prev.dataset.authorId === node.dataset.authorId
        && prev.dataset.type === node.dataset.type && at - prevAt < GROUP_GAP_MS;
      if (grouped) node.dataset.grouped = "true";
      else delete node.dataset.grouped;
    }
  }

  /** "No messages yet" while the whole (loaded) conversation is empty. */
  showEmpty() {
    const empty = this.list.childElementCount === 0 && !this.client.hasMore;
    $("empty").hidden = !empty;
  }

  /** A banner over the log while the socket is down and the client is trying again. */
  showBanner(state) {
    $("banner").hidden = state !== "reconnecting";
  }

  /** A full screen instead of the chat when the server refuses the token or conversation,
   * saying what to do; "use another token" goes back to the form. */
  showRefused(detail) {
    $("chat").hidden = true;
    $("refused").hidden = false;
    $("refused-detail").textContent = detail;
    $("refused-other").onclick = () => { location.hash = ""; };
  }

  /** On a narrow screen the presence list is a panel that the header's "People" button opens;
   * Escape closes it again. */
  startPeopleToggle() {
    const toggle = $("people-toggle");
    const people = $("people");
    const set = (open) => {
      toggle.setAttribute("aria-expanded", String(open));
      people.classList.toggle("open", open);
    };
    toggle.hidden = false;
    toggle.addEventListener("click", () => set(toggle.getAttribute("aria-expanded") !== "true"));
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && people.classList.contains("open")) { set(false); toggle.focus(); }
    });
  }

  /** A failed send's "retry" button: the same client_id again, so it is stored at most once. */
  addRetry(row, item) {
    const retry = el("button", "retry", "retry");
    retry.type = "button";
    retry.setAttribute("aria-label", "retry sending this message");
    retry.addEventListener("click", () => this.client.retry(item));
    row.firstChild.append(retry);
  }

  /** What this page shows is read, while it is visible. */
  markRead() {
    if (document.visibilityState === "visible") this.client.markRead(this.client.lastSeq);
  }

  onRead({ participant, seq }) {
    if (participant === this.client.user || seq <= (this.reads.get(participant) ?? 0)) return;
    this.reads.set(participant, seq);
    this.showSeen();
  }

  /** "seen by ..." under the last message each other participant has read. */
  showSeen() {
    for (const node of this.list.querySelectorAll(".seen")) node.remove();
    const under = new Map(); // li -> names
    for (const [participant, seq] of this.reads) {
      const next = this.nextItem(seq + 1);
      const item = next ? next.previousElementSibling : this.list.lastElementChild;
      if (!item) continue;
      under.set(item, [...(under.get(item) ?? []), participant]);
    }
    for (const [item, names] of under) item.append(el("div", "seen", `seen by ${names.sort().join(", ")}`));
  }

  /** The first item with a higher seq (binary search: items are kept in seq order). */
  nextItem(seq) {
    const items = this.list.children;
    let lo = 0;
    let hi = items.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (Number(items[mid].dataset.seq) < seq) lo = mid + 1;
      else hi = mid;
    }
    return items[lo] ?? null;
  }

  onPending(item) {
    let row = this.pendingList.querySelector(`li[data-client-id="${item.client_id}"]`);
    if (item.state === "acked") {
      row?.remove();
      return;
    }
    if (!row) {
      row = el("li", "message");
      row.dataset.clientId = item.client_id;
      row.dataset.mine = "true";
      row.append(el("div", "meta"), el("div", "text", item.content));
      this.pendingList.append(row);
      this.scrollToBottom();
    }
    row.dataset.state = item.state;
    const label = PENDING_LABELS[item.state] + (item.error ? `: ${item.error}` : "");
    row.firstChild.replaceChildren(el("span", "author", this.client.user ?? "you"), el("span", "ack", label));
    if (item.state === "failed") {
      this.addRetry(row, item);
      const dismiss = el("button", "dismiss", "dismiss");
      dismiss.type = "button";
      dismiss.addEventListener("click", () => row.remove());
      row.firstChild.append(dismiss);
    }
  }

  showPresence(members) {
    $("presence").replaceChildren(...members.map((user) => el("li", user === this.client.user ? "self" : "", user)));
  }

  onTyping(user) {
    clearTimeout(this.typers.get(user));
    this.typers.set(user, setTimeout(() => { this.typers.delete(user); this.showTyping(); }, TYPING_SHOWN_MS));
    this.showTyping();
  }

  showTyping() {
    const users = [...this.typers.keys()].sort();
    $("typing").textContent = users.length === 0 ? ""
      : `${users.join(", ")} ${users.length === 1 ? "is" : "are"} typing…`;
  }

  showState({ state, detail }) {
    const node = $("connection");
    node.dataset.state = state;
    node.textContent = STATE_LABELS[state] + (detail ? ` (${detail})` : "");
    $("send").disabled = state === "refused";
    if (state === "refused") this.showRefused(STATE_LABELS[state] + (detail ? `: ${detail}` : ""));
  }

  showHistoryEnd(hasMore) {
    const button = $("older");
    button.disabled = !hasMore;
    button.textContent = hasMore ? "Load older messages" : "Beginning of the conversation";
  }

  showProblem(text) {
    const node = $("problem");
    node.textContent = text;
    node.hidden = false;
    clearTimeout(this.problemTimer);
    this.problemTimer = setTimeout(() => { node.hidden = true; }, 8000);
  }

  fail(err) {
    this.showState({ state: "refused", detail: err.message });
    this.showProblem(err.message);
  }

  nearBottom() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < STICK_TO_BOTTOM_PX;
  }

  scrollToBottom() {
    this.log.scrollTop = this.log.scrollHeight;
  }
}

function fromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const conversationId = params.get("conversation");
  const token = params.get("token");
  return conversationId && token ? { conversationId, token } : null;
}

function open({ conversationId, token }) {
  $("join").hidden = true;
  $("chat").hidden = false;
  const page = new ChatPage(new ChatClient({ conversationId, token }));
  page.start();
  window.chat = page.client; // for the console (and the tests)
}

function showForm() {
  $("join").hidden = false;
  $("join").addEventListener("submit", (e) => {
    e.preventDefault();
    const params = new URLSearchParams({
      conversation: $("join-conversation").value.trim(), token: $("join-token").value.trim(),
    });
    history.replaceState(null, "", `#${params}`);
    open(fromFragment());
  }, { once: true });
}

// A different fragment is a different conversation or user: start afresh.
window.addEventListener("hashchange", () => location.reload());
const opened = fromFragment();
if (opened) open(opened);
else showForm();
