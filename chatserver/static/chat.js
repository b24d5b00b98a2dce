// chat.js: a small chatserver client for browsers (an ES module, no dependencies).
//
//   import { ChatClient } from "/static/chat.js";
//   const chat = new ChatClient({ conversationId, token });
//   chat.addEventListener("message", (e) => render(e.detail.message));
//   await chat.start();                     // newest page of history, then the live socket
//   chat.send("hello");                     // client_id, ack state, resent after a reconnect
//
// The token travels in Sec-WebSocket-Protocol (["chatserver.v1", "bearer.<token>"]), never in a
// URL. After a drop the client reconnects with capped, jittered backoff and resumes with
// ?since=<highest seq seen>, so nothing is missed; messages are kept by seq, so nothing shows twice.
//
// Events (CustomEvent, data in `detail`):
//   message   {message, older}   a new or changed message (same seq: replace it); a streamed
//                                message (message.stream.state "open") grows with each delta
//   pending   {pending}          a send's state changed: sending | sent | acked | failed
//   presence  {members}          sorted names of who is connected
//   typing    {user}             someone else is typing (show it for a few seconds)
//   read      {participant, seq} someone's read horizon (also each current one at start)
//   state     {state, detail}    connecting | live | reconnecting | refused | closed
//   history   {hasMore}          an older page arrived (or there is none)
//   error     {frame}            the server refused a frame (also sets pending to failed; retry()
//                                sends that item again with its client_id)

const SUBPROTOCOL = "chatserver.v1";
// Close codes after which reconnecting cannot help: bad request, bad credentials, not found.
const FATAL_CLOSE_CODES = new Set([4400, 4401, 4404]);
const CLOSE_REASONS = {
  4400: "bad request",
  4401: "the token is missing, wrong or expired",
  4404: "no such conversation for this token",
};
const MEDIA_TYPES = new Set(["IMAGE", "VIDEO", "AUDIO", "FILE"]);

export function newClientId() {
  // crypto.randomUUID needs a secure context; getRandomValues works on plain http too.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The `sub` (user) of a browser token, or null for an API key or anything unreadable. */
export function tokenUser(token) {
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    return JSON.parse(json).sub ?? null;
  } catch {
    return null;
  }
}

/** The URL in a media message's content, when it is an absolute http(s) URL; else null. */
export function mediaUrl(message) {
  if (!MEDIA_TYPES.has(message.content_type)) return null;
  try {
    const url = new URL(message.content.trim());
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** Whether `message` is a later state of `known` (a stream's text grows without updated_at). */
function newer(message, known) {
  if (message.updated_at !== known.updated_at) return message.updated_at > known.updated_at;
  if (!message.stream || !known.stream) return false;
  return message.stream.state !== known.stream.state
    || message.stream.next_index > known.stream.next_index;
}

export class ChatClient extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.conversationId  32 hex characters
   * @param {string} options.token           a browser token (or an API key)
   * @param {string} [options.baseUrl]       the server, default this page's origin
   * @param {number} [options.pageSize]      history page size (default 50)
   * @param {number} [options.backoffMin]    first reconnect delay in ms (default 500)
   * @param {number} [options.backoffMax]    longest reconnect delay in ms (default 15000)
   * @param {number} [options.typingEvery]   send typing at most this often, ms (default 2500)
   */
  constructor({ conversationId, token, baseUrl = location.origin, pageSize = 50,
                backoffMin = 500, backoffMax = 15000, typingEvery = 2500 }) {
    super();
    this.conversationId = conversationId;
    this.token = token;
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.pageSize = pageSize;
    this.backoffMin = backoffMin;
    this.backoffMax = backoffMax;
    this.typingEvery = typingEvery;
    this.user = tokenUser(token);
    this.messages = new Map(); // seq -> message
    this.runs = new Map(); // run id -> run (the copy with the highest version)
    this.lastSeq = 0; // highest seq seen: where a reconnect resumes
    this.oldestSeq = null; // lowest seq loaded: where the next older page starts
    this.hasMore = true;
    this.pending = new Map(); // client_id -> {client_id, content, ..., state}
    this.presence = new Map(); // user -> sockets we know of
    this.state = "closed";
    this.socket = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.lastTypingSent = 0;
    this.stopped = false;
    this.loadingOlder = null;
    this.readSent = 0; // the highest horizon this page marked
  }

  /** Load the newest page of history, then open the socket from the newest seq in it. */
  async start() {
    this.stopped = false;
    globalThis.addEventListener?.("online", this.retryNow);
    await this.loadOlder();
    await this.loadRuns();
    this.connect();
    this.loadReads().catch(() => {}); // "seen by" is a nicety: without it the chat still works
  }

  /** The participants' current horizons, as `read` events (later ones come as frames). */
  async loadReads() {
    const url = `${this.baseUrl}/conversations/${this.conversationId}/participants`;
    const response = await fetch(url, { headers: { Authorization: `Bearer ${this.token}` } });
    if (!response.ok) return;
    for (const p of await response.json()) {
      this.emit("read", { participant: p.id, seq: p.last_read_seq });
    }
  }

  /** Mark everything up to `seq` as read by this user (forward only; the server coalesces). */
  markRead(seq) {
    if (this.state !== "live" || seq <= this.readSent) return;
    this.readSent = seq;
    this.socket.send(JSON.stringify({ type: "read", seq }));
  }

  close() {
    this.stopped = true;
    globalThis.removeEventListener?.("online", this.retryNow);
    clearTimeout(this.retryTimer);
    if (this.socket) this.socket.close(1000, "bye");
    this.setState("closed");
  }

  // --- history -----------------------------------------------------------------------------

  /** Fetch the page just below the oldest message loaded; resolves to the messages it added. */
  loadOlder() {
    if (!this.hasMore) return Promise.resolve([]);
    this.loadingOlder ??= this.fetchOlder().finally(() => { this.loadingOlder = null; });
    return this.loadingOlder;
  }

  async fetchOlder() {
    const params = new URLSearchParams({ limit: String(this.pageSize) });
    if (this.oldestSeq !== null) params.set("before", String(this.oldestSeq));
    const url = `${this.baseUrl}/conversations/${this.conversationId}/messages?${params}`;
    const response = await fetch(url, { headers: { Authorization: `Bearer ${this.token}` } });
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      throw new Error(`history: ${response.status} ${problem.detail ?? response.statusText}`);
    }
    const page = await response.json(); // newest first
    this.hasMore = /rel="next"/.test(response.headers.get("Link") ?? "");
    const added = [];
    for (const message of page) {
      if (this.accept(message, true)) added.push(message);
    }
    this.emit("history", { hasMore: this.hasMore });
    return added;
  }

  // --- runs and actions --------------------------------------------------------------------

  async request(method, path, body) {
    const response = await fetch(`${this.baseUrl}/conversations/${this.conversationId}${path}`, {
      method, headers: { Authorization: `Bearer ${this.token}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(`${response.status} ${data.detail ?? response.statusText}`);
    return data;
  }

  /** The newest runs (the socket then reports every change). */
  async loadRuns() {
    for (const run of await this.request("GET", "/runs?limit=20")) this.acceptRun(run);
  }

  /** Ask the run's agent to stop; resolves to the run. */
  async cancelRun(runId) {
    const run = await this.request("POST", `/runs/${runId}/cancel`);
    this.acceptRun(run);
    return run;
  }

  /** Answer a message's action ({option} or {values}); resolves to the updated message. */
  async answer(messageId, body) {
    const message = await this.request("POST", `/messages/${messageId}/answer`, body);
    this.accept(message, false);
    return message;
  }

  acceptRun(run) {
    const known = this.runs.get(run.id);
    if (known && known.version >= run.version) return;
    this.runs.set(run.id, run);
    this.emit("run", { run });
  }

  // --- the socket --------------------------------------------------------------------------

  socketUrl() {
    const url = new URL(`${this.baseUrl}/ws/conversations/${this.conversationId}`);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("since", String(this.lastSeq));
    return url.href;
  }

  /** The network is back: skip the rest of the backoff wait. */
  retryNow = () => {
    if (this.retryTimer === null) return;
    clearTimeout(this.retryTimer);
    this.connect();
  };

  connect() {
    this.retryTimer = null;
    if (this.stopped) return;
    this.setState(this.attempt ? "reconnecting" : "connecting");
    const socket = new WebSocket(this.socketUrl(), [SUBPROTOCOL, `bearer.${this.token}`]);
    this.socket = socket;
    socket.onmessage = (event) => this.onFrame(JSON.parse(event.data));
    socket.onclose = (event) => this.onClose(socket, event);
  }

  onClose(socket, event) {
    if (socket !== this.socket || this.stopped) return;
    this.socket = null;
    this.presence.clear();
    this.emit("presence", { members: [] });
    for (const item of this.pending.values()) {
      if (item.state === "sent") this.setPending(item, "sending"); // resent after the reconnect
    }
    if (FATAL_CLOSE_CODES.has(event.code)) {
      this.setState("refused", CLOSE_REASONS[event.code] + (event.reason ? `: ${event.reason}` : ""));
      return;
    }
    const delay = this.backoff();
    this.attempt += 1;
    this.setState("reconnecting", `retrying in ${Math.round(delay / 100) / 10} s`);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** Full jitter over a doubling, capped window: many clients dropped at once spread out. */
  backoff() {
    const window = Math.min(this.backoffMax, this.backoffMin * 2 ** this.attempt);
    return this.backoffMin / 2 + Math.random() * (window - this.backoffMin / 2);
  }

  onFrame(frame) {
    switch (frame.type) {
      case "message":
        this.accept(frame.message, false);
        break;
      case "message.updated":
        // A message not loaded yet comes in its current state with its page; taking it now
        // would leave a hole between it and the oldest loaded one.
        if (this.messages.has(frame.message.seq)) this.accept(frame.message, false);
        break;
      case "message.delta":
        this.grow(frame);
        break;
      case "run.updated":
        this.acceptRun(frame.run);
        break;
      case "ready":
        this.attempt = 0;
        this.setState("live");
        this.flushPending();
        break;
      case "ack":
        this.accept(frame.message, false);
        this.ack(frame.client_id);
        break;
      case "error":
        this.onError(frame);
        break;
      case "presence":
        this.presence = new Map(frame.members.map((user) => [user, 1]));
        this.emitPresence();
        break;
      case "presence.join":
        if (frame.observer) break; // observers are listed apart (the presence frame's observers)
        this.presence.set(frame.user, (this.presence.get(frame.user) ?? 0) + 1);
        this.emitPresence();
        break;
      case "presence.leave":
        if (!frame.observer) this.leave(frame.user);
        break;
      case "typing":
        if (frame.user !== this.user) this.emit("typing", { user: frame.user });
        break;
      case "read":
        this.emit("read", { participant: frame.participant, seq: frame.seq });
        break;
      default:
        break; // frames added by a later protocol version
    }
  }

  leave(user) {
    const count = (this.presence.get(user) ?? 1) - 1;
    if (count > 0) this.presence.set(user, count);
    else this.presence.delete(user);
    this.emitPresence();
  }

  emitPresence() {
    this.emit("presence", { members: [...this.presence.keys()].sort() });
  }

  /** Append a `message.delta` frame's text to its streamed message (deltas come in index order;
   * ones the message already has are skipped). */
  grow(frame) {
    const known = this.messages.get(frame.seq);
    if (!known?.stream || known.stream.state !== "open") return;
    if (frame.index !== known.stream.next_index) return; // the server never skips or repeats
    const message = {
      ...known, content: known.content + frame.text,
      stream: { ...known.stream, next_index: frame.index + frame.count },
    };
    this.messages.set(message.seq, message);
    this.emit("message", { message, older: false, replaced: true });
  }

  /** Keep a message by seq; emits "message" unless it is a stale copy. True when it was new. */
  accept(message, older) {
    const known = this.messages.get(message.seq);
    if (known && !newer(message, known)) return false;
    this.messages.set(message.seq, message);
    if (message.seq > this.lastSeq) this.lastSeq = message.seq;
    if (this.oldestSeq === null || message.seq < this.oldestSeq) this.oldestSeq = message.seq;
    if (message.client_id && this.pending.has(message.client_id)) this.ack(message.client_id);
    this.emit("message", { message, older, replaced: Boolean(known) });
    return !known;
  }

  /** Messages loaded so far, in seq order. */
  ordered() {
    return [...this.messages.values()].sort((a, b) => a.seq - b.seq);
  }

  // --- sending -----------------------------------------------------------------------------

  /**
   * Send a message; resolves nothing, reports through "pending" events. Returns its client_id.
   * Options: contentType (TEXT, IMAGE, VIDEO, AUDIO, FILE), filename, metadata.
   */
  send(content, { contentType = "TEXT", filename, metadata } = {}) {
    const item = { client_id: newClientId(), content, content_type: contentType, state: "sending" };
    if (filename !== undefined) item.filename = filename;
    if (metadata !== undefined) item.metadata = metadata;
    this.pending.set(item.client_id, item);
    this.setPending(item, "sending");
    this.flushPending();
    return item.client_id;
  }

  /** Send a failed item again with the same client_id (the server stores it at most once). */
  retry(item) {
    delete item.error;
    this.pending.set(item.client_id, item);
    this.setPending(item, "sending");
    this.flushPending();
  }

  flushPending() {
    if (this.state !== "live") return;
    for (const item of this.pending.values()) {
      if (item.state !== "sending") continue;
      const { state, ...body } = item;
      this.socket.send(JSON.stringify({ type: "message", ...body }));
      this.setPending(item, "sent");
    }
  }

  ack(clientId) {
    const item = this.pending.get(clientId);
    if (!item) return;
    this.pending.delete(clientId);
    this.setPending(item, "acked");
  }

  onError(frame) {
    const item = frame.client_id ? this.pending.get(frame.client_id) : null;
    if (item) {
      this.pending.delete(item.client_id);
      item.error = frame.detail;
      this.setPending(item, "failed");
    }
    this.emit("error", { frame });
  }

  setPending(item, state) {
    item.state = state;
    this.emit("pending", { pending: item });
  }

  /** Tell the others this user is typing (at most once per typingEvery ms). */
  typing() {
    const now = Date.now();
    if (this.state !== "live" || now - this.lastTypingSent < this.typingEvery) return;
    this.lastTypingSent = now;
    this.socket.send(JSON.stringify({ type: "typing" }));
  }

  // --- plumbing ----------------------------------------------------------------------------

  setState(state, detail = "") {
    this.state = state;
    this.emit("state", { state, detail });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
