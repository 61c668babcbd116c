/**
 * Segue JS client — the embeddable SDK for customers (chat widget) and agents (console).
 *
 *   import { SegueCustomer, SegueAgent } from "/sdk/segue.js";
 *
 * Plain ES module, no build step. It speaks protocol v1 (docs/protocol.md) over Socket.IO and
 * keeps one `Conversation` object per conversation. Every conversation event carries a stream id;
 * the SDK keeps events sorted by id, drops duplicates by id, and after a reconnect (or, for
 * customers, a page reload) asks the server only for what came after the last id it saw.
 *
 * Extension point (e.g. the calls module `call.js`): `client.socket` is the Socket.IO socket,
 * `client.request(event, payload)` sends a request and resolves with the ack's result, and
 * both clients and conversations are event emitters. See docs/sdk.md.
 */
import { io } from "./vendor/socket.io.esm.min.js";

export const PROTOCOL_VERSION = 1;

/* ------------------------------------------------------------------------------------------- */
/* Small building blocks                                                                        */
/* ------------------------------------------------------------------------------------------- */

/** A minimal event emitter: `on` returns a function that unsubscribes. */
export class Emitter {
  #handlers = new Map();

  on(type, handler) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, new Set());
    this.#handlers.get(type).add(handler);
    return () => this.off(type, handler);
  }

  once(type, handler) {
    const off = this.on(type, (...args) => {
      off();
      handler(...args);
    });
    return off;
  }

  off(type, handler) {
    this.#handlers.get(type)?.delete(handler);
  }

  emit(type, ...args) {
    for (const handler of [...(this.#handlers.get(type) ?? [])]) {
      try {
        handler(...args);
      } catch (err) {
        // One faulty listener must not stop the others (or the SDK's own bookkeeping).
        console.error(`segue: a "${type}" listener failed`, err);
      }
    }
  }
}

/** How many times a `rate_limited` request is sent again (after the wait the server asks for). */
const RATE_LIMITED_RETRIES = 5;

/** A wait before trying again: at least `atLeastMs` and what the server asked (`retryAfterMs`), at most 30 s. */
function retryWait(atLeastMs, retryAfterMs) {
  return Math.min(30000, Math.max(atLeastMs, retryAfterMs ?? 0));
}

/** A refused request or a server `error` push: `{code, message, field?, event?}`. */
export class SegueError extends Error {
  constructor(code, message, { field, event, retryAfterMs, conversationId } = {}) {
    super(message || code);
    this.name = "SegueError";
    this.code = code;
    this.field = field;
    this.event = event;
    this.retryAfterMs = retryAfterMs; // rate_limited: how long to wait before sending again
    this.conversationId = conversationId; // resume_failed: the conversation that may miss events
  }

  static from(error, event) {
    if (!error || typeof error !== "object") return new SegueError("unknown", `${event} failed`, { event });
    return new SegueError(error.code ?? "unknown", error.message ?? `${event} failed`, {
      field: error.field,
      event: error.event ?? event,
      retryAfterMs: error.retry_after_ms,
    });
  }
}

/**
 * Order two event ids (Redis stream ids, "<ms>-<seq>"). Returns <0, 0 or >0.
 * Ids of another shape are compared as strings.
 */
export function compareIds(a, b) {
  if (a === b) return 0;
  if (a == null) return -1;
  if (b == null) return 1;
  const ma = /^(\d+)-(\d+)$/.exec(a);
  const mb = /^(\d+)-(\d+)$/.exec(b);
  if (ma && mb) return Number(ma[1]) - Number(mb[1]) || Number(ma[2]) - Number(mb[2]);
  return a < b ? -1 : 1;
}

/**
 * Where a resume starts: the last event id seen or, when that is earlier, `since` (a `resync`
 * names from when pushes may have been lost: pushes that came after the gap moved the last id
 * past the lost ones). What comes again is dropped by id.
 */
function resumeAfter(last, since) {
  return last && since && compareIds(since, last) < 0 ? since : last;
}

/** The earlier of two resume points (`null`: from the start, earlier than any id). */
function earlier(a, b) {
  return a == null || b == null ? null : compareIds(a, b) <= 0 ? a : b;
}

/**
 * A resume the SDK makes by itself (after a reconnect or a `resync`) answered `unavailable`,
 * `timeout` or (after the request's own retries) `rate_limited` is asked again, from the same
 * point, after these waits (at least the `retry_after_ms` named): nothing else would fetch what
 * was missed. Then it gives up with a `resume_failed` error; the point is kept for the next resume.
 */
const RESUME_RETRY_MS = [500, 1000, 2000, 4000];
const RESUME_RETRIED = new Set(["unavailable", "timeout", "rate_limited"]);

/**
 * Refusals of a connection that say "not now" rather than "no" (Redis blinked on the server, too
 * many connects from this address): Socket.IO gives a refused socket up, so the SDK connects again
 * itself, after a wait that doubles up to 8 s (at least the `retry_after_ms` named).
 */
const CONNECT_RETRIED = new Set(["unavailable", "rate_limited"]);
const CONNECT_RETRY_MS = [500, 1000, 2000, 4000, 8000];

/** Web Storage that never throws (storage may be disabled, full, or blocked in iframes). */
class SafeStorage {
  constructor(kind, prefix) {
    this.prefix = prefix;
    try {
      this.area = kind === "session" ? window.sessionStorage : window.localStorage;
    } catch {
      this.area = null;
    }
  }

  get(key) {
    try {
      const raw = this.area?.getItem(this.prefix + key);
      return raw == null ? null : JSON.parse(raw);
    } catch {
      return null;
    }
  }

  set(key, value) {
    try {
      this.area?.setItem(this.prefix + key, JSON.stringify(value));
    } catch {
      /* quota exceeded or storage disabled: the SDK works without persistence */
    }
  }

  remove(key) {
    try {
      this.area?.removeItem(this.prefix + key);
    } catch {
      /* ignore */
    }
  }
}

let clientIdCounter = 0;
function newClientId() {
  clientIdCounter += 1;
  const random = Math.random().toString(36).slice(2, 8);
  return `m-${Date.now().toString(36)}-${clientIdCounter}-${random}`;
}

/** The page's context, recorded with a new conversation (the agent sees where the customer was). */
function pageContext() {
  const context = {};
  if (typeof location !== "undefined") context.page_url = location.href;
  if (typeof document !== "undefined") {
    if (document.title) context.page_title = document.title;
    if (document.referrer) context.referrer = document.referrer;
  }
  if (typeof navigator !== "undefined" && navigator.language) context.locale = navigator.language;
  return context;
}

/* ------------------------------------------------------------------------------------------- */
/* Conversation                                                                                 */
/* ------------------------------------------------------------------------------------------- */

/**
 * One conversation: its summary, its events (sorted by id, no duplicates) and its actions.
 *
 * Events emitted (each also re-emitted by the client with the conversation as last argument):
 *   "event"        (event, {replay})  every new log event, in id order per batch
 *   "message"      (event)            a new `message` event
 *   "conversation" (summary)          the summary changed (state, agent, channels...)
 *   "typing"       ({author, typing}) the other side started/stopped typing
 *   "read"         ({reader, event_id}) someone read up to event_id
 *   "position"     ({position, estimated_wait_s}) queue position (customers)
 *   "pending"      ({client_id, text}) a message was sent and awaits its ack
 *   "failed"       ({client_id, text, error}) a sent message was refused / not acknowledged
 */
export class Conversation extends Emitter {
  constructor(client, id) {
    super();
    this.client = client;
    this.id = id;
    this.summary = null;
    /** Events in id order. */
    this.events = [];
    /** Customer's other conversations (agents only): [summary], newest first. */
    this.history = [];
    /** What agents see of the customer beyond the summary (agents only): {id, pages: [{url, title?, ts}]}, newest first. */
    this.customer = null;
    /** Latest read receipt per reader, key "kind:id" → {reader, event_id}. */
    this.reads = new Map();
    /** Last queue position push (customers). */
    this.position = null;
    /** Messages sent and not yet acknowledged: client_id → text. */
    this.pending = new Map();
    /**
     * Where a resume that has not been answered yet started (`null`: from the start; undefined:
     * none): events after it may be missing although later ones (pushes) are here. The next
     * resume starts there, not at the last id.
     */
    this.missingAfter = undefined;
    this.#ids = new Set();
    this.#lastReadSent = null;
    this.#typingSent = false;
    this.#typingSentAt = 0;
    this.#typingTimer = null;
  }

  #ids;
  #lastReadSent;
  #typingSent;
  #typingSentAt;
  #typingTimer;

  get state() {
    return this.summary?.state ?? null;
  }

  get isClosed() {
    return this.state === "closed";
  }

  /** The id of the newest event seen: the resume cursor. */
  get lastEventId() {
    return this.events.length ? this.events[this.events.length - 1].id : null;
  }

  has(eventId) {
    return this.#ids.has(eventId);
  }

  /** Only the `message` events. */
  get messages() {
    return this.events.filter((e) => e.type === "message");
  }

  /**
   * Add events (from an ack, a push, a resume or a cache). Returns those that were new.
   * Duplicates (same id) are dropped; events are kept in id order.
   */
  ingest(events, { replay = false } = {}) {
    const fresh = [];
    for (const event of events ?? []) {
      if (!event || typeof event.id !== "string" || this.#ids.has(event.id)) continue;
      this.#ids.add(event.id);
      fresh.push(event);
    }
    if (!fresh.length) return fresh;
    fresh.sort((a, b) => compareIds(a.id, b.id));
    const last = this.lastEventId;
    this.events.push(...fresh);
    if (last != null && compareIds(fresh[0].id, last) < 0) {
      this.events.sort((a, b) => compareIds(a.id, b.id));
    }
    for (const event of fresh) {
      const clientId = event.data?.client_id;
      if (clientId && this.pending.has(clientId)) this.pending.delete(clientId);
      this.emit("event", event, { replay });
      this.client.emit("event", event, this, { replay });
      if (event.type === "message") {
        this.emit("message", event, { replay });
        this.client.emit("message", event, this, { replay });
      }
    }
    this.client._persist?.(this);
    return fresh;
  }

  /** Replace the summary (pushed by the server whenever the state changes). */
  updateSummary(summary) {
    if (!summary) return;
    this.summary = { ...(this.summary ?? {}), ...summary };
    // Fields the server leaves out when they no longer apply.
    for (const key of ["agent", "transfer", "offer"]) if (!(key in summary)) delete this.summary[key];
    // The summary carries the stored read cursors ({customer, agent}): receipts survive a reload.
    for (const [kind, eventId] of Object.entries(summary.read ?? {})) {
      this._onRead({ conversation_id: this.id, reader: { kind, id: "*" }, event_id: eventId }, { quiet: true });
    }
    this.emit("conversation", this.summary);
    this.client.emit("conversation", this.summary, this);
    this.client._persist?.(this);
  }

  /**
   * Resume from the last event seen (or from the start, or from where a resume that failed
   * started: `missingAfter`): fetches only what was missed.
   */
  async resume() {
    return this.client._resume(this);
  }

  /**
   * Send a chat message. Resolves with the stored event (its `id` is its identity); the event
   * is also delivered through "event"/"message" exactly once. Rejects with a SegueError.
   */
  async send(text, { clientId = newClientId() } = {}) {
    const value = String(text ?? "");
    if (!value.trim()) throw new SegueError("invalid", "a message cannot be empty", { field: "text" });
    this.pending.set(clientId, value);
    this.emit("pending", { client_id: clientId, text: value });
    this.setTyping(false);
    try {
      const { event } = await this.client.request("message.send", {
        conversation_id: this.id,
        text: value,
        client_id: clientId,
      });
      this.ingest([event]);
      return event;
    } catch (error) {
      this.pending.delete(clientId);
      this.emit("failed", { client_id: clientId, text: value, error });
      throw error;
    }
  }

  /** Tell the other side whether we are typing. Repeated calls are cheap (throttled). */
  setTyping(typing) {
    if (!this.client.connected) return;
    const now = Date.now();
    if (typing && this.#typingSent && now - this.#typingSentAt < 2500) return;
    if (!typing && !this.#typingSent) return;
    this.#typingSent = typing;
    this.#typingSentAt = now;
    this.client.request("typing", { conversation_id: this.id, typing }).catch(() => {});
  }

  /**
   * Call on every keystroke in a composer: sends `typing: true` (throttled) and `typing: false`
   * after `idleMs` without input.
   */
  noteTyping(idleMs = 4000) {
    this.setTyping(true);
    clearTimeout(this.#typingTimer);
    this.#typingTimer = setTimeout(() => this.setTyping(false), idleMs);
  }

  /** Read receipt: everything up to `eventId` (default: the newest event) has been seen. */
  markRead(eventId = this.lastEventId) {
    if (!eventId || !this.client.connected) return;
    if (this.#lastReadSent && compareIds(eventId, this.#lastReadSent) <= 0) return;
    this.#lastReadSent = eventId;
    this.client.request("read", { conversation_id: this.id, event_id: eventId }).catch(() => {
      this.#lastReadSent = null;
    });
  }

  /** The newest event id that a reader of `kind` ("customer"/"agent") has read, or null. */
  readUpTo(kind) {
    let best = null;
    for (const { reader, event_id: id } of this.reads.values()) {
      if (reader?.kind === kind && (best == null || compareIds(id, best) > 0)) best = id;
    }
    return best;
  }

  _onTyping(payload) {
    this.emit("typing", payload);
    this.client.emit("typing", payload, this);
  }

  _onRead(payload, { quiet = false } = {}) {
    const key = `${payload.reader?.kind}:${payload.reader?.id}`;
    const previous = this.reads.get(key);
    if (previous && compareIds(payload.event_id, previous.event_id) <= 0) return;
    if (quiet && compareIds(payload.event_id, this.readUpTo(payload.reader?.kind)) <= 0) return;
    this.reads.set(key, payload);
    if (quiet) return;
    this.client._persist?.(this);
    this.emit("read", payload);
    this.client.emit("read", payload, this);
  }

  _onPosition(payload) {
    this.position = payload;
    this.emit("position", payload);
    this.client.emit("position", payload, this);
  }
}

/** Customer-side conversation: adds closing and rating. */
export class CustomerConversation extends Conversation {
  /** The customer ends the conversation. */
  async close() {
    const { event } = await this.client.request("conversation.close", { conversation_id: this.id });
    this.ingest([event]);
    return event;
  }

  /** Rate the conversation (1..5) with an optional comment; usually after it closed. */
  async rate(score, comment) {
    const payload = { conversation_id: this.id, score: Number(score) };
    if (comment) payload.comment = String(comment);
    const { event } = await this.client.request("conversation.rate", payload);
    this.ingest([event]);
    return event;
  }

  /** True once a `conversation.rated` event is in the log. */
  get rated() {
    return this.events.some((e) => e.type === "conversation.rated");
  }

  /** Stop resuming this conversation on later visits (the widget's "start a new chat"). */
  forget() {
    this.client.forget(this.id);
  }
}

/** Agent-side conversation: notes, transfers, consults, canned replies, close with disposition. */
export class AgentConversation extends Conversation {
  /** Read-only: an earlier conversation opened from the customer's history. */
  get readOnly() {
    return this.isClosed;
  }

  /** An internal note (visibility "agents": never shown to the customer). */
  async addNote(text) {
    const { event } = await this.client.request("note.add", { conversation_id: this.id, text: String(text) });
    this.ingest([event]);
    return event;
  }

  /**
   * Transfer to an agent or a queue.
   *   transfer({agent: "a_123"}, {mode: "warm", note: "billing question"})
   *   transfer({queue: "billing"})          // cold by default
   */
  async transfer(to, { mode = "cold", note } = {}) {
    const payload = { conversation_id: this.id, to, mode };
    if (note) payload.note = String(note);
    const { event } = await this.client.request("transfer", payload);
    this.ingest([event]);
    return event;
  }

  /** A consult message between the agents of a warm transfer (agents only). */
  async consult(text) {
    const { event } = await this.client.request("consult.message", { conversation_id: this.id, text: String(text) });
    this.ingest([event]);
    return event;
  }

  /** Warm transfer: hand over to the agent who accepted (this agent leaves). */
  async completeTransfer() {
    const { event } = await this.client.request("transfer.complete", { conversation_id: this.id });
    this.ingest([event]);
    return event;
  }

  /** Warm transfer: keep the conversation. */
  async cancelTransfer() {
    const { event } = await this.client.request("transfer.cancel", { conversation_id: this.id });
    this.ingest([event]);
    return event;
  }

  /**
   * Close with a disposition (e.g. "resolved") and optional wrap-up `tags` (short labels, at most
   * 20: `close("resolved", {tags: ["refund"]})`).
   */
  async close(disposition, { tags } = {}) {
    const payload = { conversation_id: this.id, disposition: String(disposition) };
    if (tags?.length) payload.tags = tags.map(String);
    const { event } = await this.client.request("conversation.close", payload);
    this.ingest([event]);
    return event;
  }

  /** A canned reply's text with placeholders filled for this conversation (edit before sending). */
  async renderCanned(id) {
    const { text } = await this.client.request("canned.render", { id, conversation_id: this.id });
    return text;
  }

  /**
   * The transfer in progress, if any: `{mode, to: {agent?, queue?}, from_agent?, accepted}`
   * (from the summary; agents only). `to.agent` is `{id, name}`.
   */
  get pendingTransfer() {
    if (this.isClosed) return null;
    return this.summary?.transfer ?? null;
  }
}

/* ------------------------------------------------------------------------------------------- */
/* Clients                                                                                      */
/* ------------------------------------------------------------------------------------------- */

/**
 * What customers and agents share: the socket, requests with acks, the conversation registry,
 * reconnect + resume.
 *
 * Emits: "session" (session), "connect" (), "disconnect" (reason), "reconnect" (), "error"
 * (SegueError), plus every conversation event re-emitted with the conversation as last argument.
 */
class SegueClient extends Emitter {
  constructor(namespace, options = {}) {
    super();
    const base = options.url ?? (typeof location !== "undefined" ? location.origin : "");
    this.url = String(base).replace(/\/+$/, "");
    this.namespace = namespace;
    this.path = options.path ?? "/socket.io";
    this.requestTimeoutMs = options.requestTimeoutMs ?? 15000;
    /** The Socket.IO socket (null before connect()). Plug-ins may listen on it directly. */
    this.socket = null;
    /** The last `session` payload. */
    this.session = null;
    /** conversation id → Conversation */
    this.conversations = new Map();
    this.#sessions = 0;
    this.#ready = null;
  }

  #sessions;
  #ready;
  /** `rate_limited`: no request (but call signalling) goes out before this time (Date.now() ms). */
  #pausedUntil = 0;

  get connected() {
    return Boolean(this.socket?.connected);
  }

  /** Subclasses: the `auth` payload for the connect. */
  _auth() {
    return { v: PROTOCOL_VERSION };
  }

  /** Subclasses: build a conversation object. */
  _newConversation(id) {
    return new Conversation(this, id);
  }

  /** The Conversation for `id` (created empty on first use). */
  conversation(id) {
    let conversation = this.conversations.get(id);
    if (!conversation) {
      conversation = this._newConversation(id);
      this.conversations.set(id, conversation);
    }
    return conversation;
  }

  /**
   * Connect and wait for the server's `session`. Resolves with the session payload; rejects
   * with a SegueError when the server refuses the connection (e.g. `bad_token`); a refusal that
   * says "not now" (`unavailable`, `rate_limited`) is only reported as `connect_error` and
   * connected again. Socket.IO reconnects by itself afterwards; each reconnect resumes open
   * conversations.
   */
  connect() {
    if (this.#ready) return this.#ready;
    this.#ready = new Promise((resolve, reject) => {
      const socket = io(this.url + this.namespace, {
        path: this.path,
        // A function, so each reconnect sends the current token (it may have been renewed).
        auth: (cb) => cb(this._auth()),
      });
      this.socket = socket;

      let refusals = 0; // "not now" refusals since the last session
      socket.on("session", async (session) => {
        refusals = 0;
        this.session = session;
        this.#sessions += 1;
        const first = this.#sessions === 1;
        try {
          await this._onSession(session, { first });
        } catch (error) {
          this.emit("error", error instanceof SegueError ? error : new SegueError("unknown", String(error)));
        }
        this.emit("session", session);
        if (!first) this.emit("reconnect");
        resolve(session);
      });
      socket.on("connect", () => this.emit("connect"));
      socket.on("disconnect", (reason) => this.emit("disconnect", reason));
      socket.on("connect_error", (err) => {
        const data = err?.data;
        const error = data?.code
          ? new SegueError(data.code, data.message, { retryAfterMs: data.retry_after_ms })
          : new SegueError("unavailable", err?.message || "cannot reach the server");
        this.emit("connect_error", error);
        if (CONNECT_RETRIED.has(data?.code)) {
          const backoff = CONNECT_RETRY_MS[Math.min(refusals, CONNECT_RETRY_MS.length - 1)];
          refusals += 1;
          const wait = retryWait(backoff, error.retryAfterMs);
          setTimeout(() => {
            if (this.socket === socket && !socket.connected) socket.connect();
          }, wait);
          return;
        }
        // Any other refusal by the server is final (Socket.IO does not retry); a network error is retried.
        if (data?.code) {
          socket.disconnect();
          if (this.socket === socket) {
            // A later connect() (e.g. after logging in again) starts afresh.
            this.socket = null;
            this.#ready = null;
            this.#sessions = 0;
          }
          this._onRefused(error);
          reject(error);
        }
      });

      socket.on("event", (event) => {
        if (event?.conversation_id) this.conversation(event.conversation_id).ingest([event]);
      });
      socket.on("conversation", (summary) => {
        if (summary?.id) this.conversation(summary.id).updateSummary(summary);
      });
      socket.on("typing", (payload) => {
        if (payload?.conversation_id) this.conversation(payload.conversation_id)._onTyping(payload);
      });
      socket.on("read", (payload) => {
        if (payload?.conversation_id) this.conversation(payload.conversation_id)._onRead(payload);
      });
      socket.on("error", (payload) => {
        this.emit("error", SegueError.from(payload, payload?.event));
      });
      // The server's link to the other servers blinked: pushes may have been missed on a socket
      // that stayed connected. Resume open conversations from their last event id, as after a
      // reconnect (docs/protocol.md "resync").
      socket.on("resync", (payload) => {
        this._resync(payload?.since).catch((error) => this.emit("error", error));
      });
      this._listen(socket);
    });
    // Nobody may be awaiting connect() (the pages listen to events instead).
    this.#ready.catch(() => {});
    return this.#ready;
  }

  /** Subclasses: extra server → client events. */
  _listen(_socket) {}

  /** Subclasses: after every `session` (the first one and each reconnect). */
  async _onSession(_session, { first: _first }) {}

  /** Subclasses: resume the open conversations (a `resync` push; `since`: its event id, if any). */
  async _resync(_since) {}

  /**
   * The resumes the SDK makes by itself: after a reconnect (`since` undefined) or a `resync` (its
   * `since`). The first asks are awaited (so connect() resolves once they are answered); those
   * the server could not answer are asked again in the background (#askAgain). `failed(conversation,
   * error)` hears a final refusal (`not_found`, `forbidden`...) or `resume_failed`.
   */
  async _resumeAll(conversations, since, failed) {
    await Promise.all(
      conversations.map(async (conversation) => {
        try {
          await this._resume(conversation, since);
        } catch (error) {
          if (!RESUME_RETRIED.has(error?.code)) failed(conversation, error);
          else this.#askAgain(conversation, since, error).catch((final) => failed(conversation, final));
        }
      }),
    );
  }

  /**
   * A resume the server could not answer (`error`), asked again after RESUME_RETRY_MS (at least
   * the `retry_after_ms` named). Rejects with a final refusal, or with `resume_failed` once the
   * retries are spent; stops if the page called disconnect().
   */
  async #askAgain(conversation, since, error) {
    for (const backoff of RESUME_RETRY_MS) {
      const asked = error.code === "rate_limited" ? error.retryAfterMs : 0;
      await new Promise((r) => setTimeout(r, retryWait(backoff, asked)));
      if (!this.socket) return; // nothing to resume on
      try {
        await this._resume(conversation, since);
        return;
      } catch (again) {
        if (!RESUME_RETRIED.has(again?.code)) throw again;
        error = again;
      }
    }
    throw new SegueError(
      "resume_failed",
      `could not fetch what conversation ${conversation.id} missed (${error.message}): ` +
        "the next reconnect, resync or resume() asks again from the same point",
      { event: error.event, conversationId: conversation.id },
    );
  }

  /** Subclasses: the server refused the connection. */
  _onRefused(_error) {}

  /** Close the connection (no automatic reconnect). */
  disconnect() {
    this.socket?.disconnect();
    this.socket = null;
    this.#ready = null;
    this.#sessions = 0;
  }

  /**
   * Send a request and resolve with the ack's result (`{ok: true, ...}` minus `ok`);
   * reject with a SegueError (`invalid`, `forbidden`, `timeout`, ...). A `rate_limited` answer
   * (the server is busy, or this page sends faster than a person can) is retried after the
   * `retry_after_ms` it names, a few times, before it is passed on. Meanwhile the client's other
   * requests wait too (the server told this connection when to come back, not one request), so a
   * busy server sees this client again once, at the time it chose; call signalling (`call.*`),
   * which the server never refuses for load, does not wait.
   */
  async request(event, payload = {}) {
    const waits = !String(event).startsWith("call.");
    for (let attempt = 0; ; attempt++) {
      while (waits && this.#pausedUntil > Date.now()) {
        await new Promise((r) => setTimeout(r, this.#pausedUntil - Date.now()));
      }
      try {
        return await this.#requestOnce(event, payload);
      } catch (err) {
        if (err?.code !== "rate_limited" || attempt >= RATE_LIMITED_RETRIES) throw err;
        const wait = retryWait(50, err.retryAfterMs ?? 1000);
        if (waits) this.#pausedUntil = Math.max(this.#pausedUntil, Date.now() + wait);
        else await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  #requestOnce(event, payload) {
    return new Promise((resolve, reject) => {
      if (!this.socket) {
        reject(new SegueError("not_connected", "call connect() first", { event }));
        return;
      }
      this.socket.timeout(this.requestTimeoutMs).emit(event, payload, (err, answer) => {
        if (err) {
          reject(new SegueError("timeout", `the server did not answer ${event}`, { event }));
        } else if (answer && answer.ok === true) {
          const { ok: _ok, ...result } = answer;
          resolve(result);
        } else {
          reject(SegueError.from(answer?.error, event));
        }
      });
    });
  }

  /**
   * Fetch what a conversation missed: the events after its last id or, when earlier, after
   * `since` (a `resync`'s) or after `missingAfter` (a resume not answered yet started there:
   * pushes that came meanwhile moved the last id past what it had to fetch). What comes again is
   * dropped by id. Resolves with the conversation.
   */
  async _resume(conversation, since) {
    let after = resumeAfter(conversation.lastEventId, since);
    if (conversation.missingAfter !== undefined) after = earlier(after, conversation.missingAfter);
    conversation.missingAfter = after;
    this._persist?.(conversation);
    const result = await this._fetch(conversation, after);
    // Everything after `after` is in, unless a resume from an earlier point is still owed.
    if (conversation.missingAfter !== undefined && compareIds(after, conversation.missingAfter) <= 0) {
      conversation.missingAfter = undefined;
      this._persist?.(conversation);
    }
    return result;
  }

  /** Subclasses: ask the server for a conversation's events after `after` (null: all). */
  async _fetch(_conversation, _after) {}

  /** Apply a `{conversation, events, history?}` result to the registry. */
  _applyResult(result) {
    const summary = result.conversation;
    const conversation = this.conversation(summary.id);
    if (result.history) conversation.history = result.history;
    if (result.customer) conversation.customer = result.customer;
    conversation.updateSummary(summary);
    conversation.ingest(result.events ?? []);
    return conversation;
  }
}

/**
 * The customer side (`/customer` namespace).
 *
 *   const customer = new SegueCustomer({ url, site, identity });
 *   await customer.connect();
 *   const chat = customer.openConversations()[0] ?? await customer.startConversation({ queue: "general" });
 *   chat.on("message", (event) => ...);
 *   await chat.send("Hello");
 *
 * The visitor token lives in localStorage, so the same visitor comes back as the same customer.
 * Open conversations are remembered (their ids in localStorage, their events in sessionStorage):
 * after a reload they are shown at once from the cache and resumed from the last event id.
 */
export class SegueCustomer extends SegueClient {
  constructor(options = {}) {
    super("/customer", options);
    const prefix = options.storagePrefix ?? "segue.customer.";
    this.local = new SafeStorage("local", prefix);
    this.sessionStore = new SafeStorage("session", prefix);
    this.site = options.site ?? null;
    this.identity = options.identity ?? null;
    this.maxCachedEvents = options.maxCachedEvents ?? 500;
    /** Resume remembered conversations automatically on connect (default true). */
    this.autoResume = options.autoResume ?? true;
    // Remembered conversations are available at once (from the cache), before connect() answers.
    this.#restoreFromCache();
  }

  get visitorToken() {
    return this.local.get("visitor_token");
  }

  _auth() {
    const auth = { v: PROTOCOL_VERSION };
    const token = this.visitorToken;
    if (token) auth.visitor_token = token;
    if (this.site && this.identity) {
      auth.site = this.site;
      auth.identity = this.identity;
    }
    return auth;
  }

  _newConversation(id) {
    return new CustomerConversation(this, id);
  }

  _listen(socket) {
    socket.on("queue.position", (payload) => {
      if (payload?.conversation_id) this.conversation(payload.conversation_id)._onPosition(payload);
    });
  }

  _onRefused(error) {
    // A visitor token the server no longer accepts: forget it, the next connect gets a new one.
    if (error.code === "bad_token") this.local.remove("visitor_token");
  }

  async _onSession(session, { first }) {
    if (session?.visitor_token) this.local.set("visitor_token", session.visitor_token);
    if (!this.autoResume && first) return;
    await this._resumeAll(this.rememberedConversations(), undefined, (conversation, error) => {
      // Gone or not ours (another visitor token): stop remembering it.
      if (error.code === "not_found" || error.code === "forbidden") this.forget(conversation.id);
      else this.emit("error", error);
    });
  }

  async _resync(since) {
    await this._resumeAll(this.rememberedConversations(), since, (_c, error) => this.emit("error", error));
  }

  /** Conversations remembered by this browser (newest last), as Conversation objects. */
  rememberedConversations() {
    return this.#rememberedIds().map((id) => this.conversation(id));
  }

  /** The remembered conversations that are not closed. */
  openConversations() {
    return this.rememberedConversations().filter((c) => !c.isClosed);
  }

  /**
   * Start a conversation. `context` is merged over the page's URL, title, referrer and locale.
   * `text` (optional) is the first message; `name` / `email` (optional) introduce an anonymous
   * visitor (a verified identity brings its own). `channel`: "chat" (default), "voice" or
   * "video" (a call from the web; then `SegueCall.request("video")`). `attributes` (optional):
   * custom attributes set with the start (see setAttributes). Resolves with the Conversation.
   */
  async startConversation({ queue, channel = "chat", context = {}, text, name, email, attributes } = {}) {
    const payload = { channel, context: { ...pageContext(), ...context } };
    if (queue) payload.queue = queue;
    if (text) payload.text = String(text);
    if (name) payload.name = String(name);
    if (email) payload.email = String(email);
    if (attributes && Object.keys(attributes).length) payload.attributes = { ...attributes };
    const result = await this.request("conversation.start", payload);
    this.#remember(result.conversation.id);
    return this._applyResult(result);
  }

  /**
   * Set custom attributes of this customer (`{plan: "pro", order_id: "A-1001", vip: true}`;
   * `null` deletes a key). Keys: a letter, then letters, digits, `_ . -` (up to 64); values: text
   * up to 1,000 characters, finite numbers, booleans; at most 50 per customer. They are kept on
   * the customer (and travel into later conversations) and on every open conversation, where
   * agents see them. Resolves with `{attributes}`: all of the customer's attributes after the
   * change. Rejects with a SegueError (`invalid`, with `field` naming the key: `attributes.plan`).
   */
  async setAttributes(attributes, { conversationId } = {}) {
    const payload = { attributes: { ...(attributes ?? {}) } };
    if (conversationId) payload.conversation_id = conversationId;
    const { attributes: all } = await this.request("attributes.set", payload);
    return { attributes: all };
  }

  /**
   * Record a page view on the customer's page trail (agents see what the customer looked at,
   * before and during a conversation). Defaults: `location.href` and `document.title`. Only
   * http(s) URLs; a repeat of the same URL within a few seconds counts once. A single-page app
   * calls it on each route change. Resolves when stored.
   */
  async pageView({ url, title } = {}) {
    const payload = { url: String(url ?? (typeof location !== "undefined" ? location.href : "")) };
    const t = title ?? (typeof document !== "undefined" ? document.title : "");
    if (t) payload.title = String(t).slice(0, 512);
    await this.request("page.view", payload);
  }

  /** The customer's conversations as the server knows them (summaries, any device). */
  async listConversations() {
    const { conversations } = await this.request("conversations.list", {});
    return conversations;
  }

  /** The customer's conversations, newest first (an alias of listConversations()). */
  async history() {
    const list = await this.listConversations();
    return [...list].sort((a, b) => (b.created_ts ?? 0) - (a.created_ts ?? 0));
  }

  /**
   * Published help articles matching `q`, best first (the knowledge base, docs/knowledge.md):
   * `[{id, slug, title, snippet: {text, highlights}, url}]`. Works before any conversation.
   */
  async searchHelp(q, { limit = 5 } = {}) {
    const { articles } = await this.request("kb.search", { q: String(q ?? "").slice(0, 200), limit });
    return articles;
  }

  /**
   * A published help article by slug or id: `{id, slug, title, html, url, updated_ts}`. `html` is
   * sanitised by the server (safe to insert); opening one counts toward the self-service rate.
   */
  async helpArticle(slug) {
    const { article } = await this.request("kb.article", { slug: String(slug ?? "") });
    return article;
  }

  /** Open (and remember) a conversation by id, e.g. one from listConversations(). */
  async openConversation(id) {
    this.#remember(id);
    const conversation = this.conversation(id);
    await this._resume(conversation);
    return conversation;
  }

  async _fetch(conversation, after) {
    const payload = { conversation_id: conversation.id };
    if (after) payload.after = after;
    return this._applyResult(await this.request("conversation.resume", payload));
  }

  /** Stop remembering a conversation (it stays on the server). */
  forget(id) {
    this.local.set("conversations", this.#rememberedIds().filter((x) => x !== id));
    this.sessionStore.remove(`conversation.${id}`);
  }

  /**
   * Become a verified customer without a reload (the visitor signed in on the embedding site), or
   * anonymous again with `{site: null, identity: null}`: reconnects with the new identity. The
   * visitor token is kept, so the anonymous visitor's conversations join the identity's, as on a
   * connect with both. Resolves with the new session. If the server refuses the identity
   * (`bad_identity`), the previous identity is restored and reconnected, and the promise rejects
   * with that SegueError.
   */
  async setIdentity({ site = null, identity = null } = {}) {
    if ((site == null) !== (identity == null)) {
      throw new SegueError("invalid", "setIdentity needs both site and identity (or neither, to become anonymous)", {
        field: site == null ? "site" : "identity",
      });
    }
    if (site != null && typeof site !== "string") throw new SegueError("invalid", "site must be the site's name (a string)", { field: "site" });
    if (identity != null && (typeof identity !== "object" || Array.isArray(identity))) {
      throw new SegueError("invalid", "identity must be the signed object from your server (see docs/sdk.md, Verified identity)", { field: "identity" });
    }
    const previous = { site: this.site, identity: this.identity };
    this.site = site;
    this.identity = identity;
    this.disconnect();
    try {
      return await this.connect();
    } catch (error) {
      if (error?.code !== "bad_identity") throw error;
      this.site = previous.site;
      this.identity = previous.identity;
      this.disconnect();
      this.connect();
      throw error;
    }
  }

  /** Forget this visitor entirely (new visitor token on the next connect). */
  resetVisitor() {
    for (const id of this.#rememberedIds()) this.sessionStore.remove(`conversation.${id}`);
    this.local.remove("conversations");
    this.local.remove("visitor_token");
  }

  #rememberedIds() {
    const ids = this.local.get("conversations");
    return Array.isArray(ids) ? ids.filter((x) => typeof x === "string") : [];
  }

  #remember(id) {
    const ids = this.#rememberedIds().filter((x) => x !== id);
    ids.push(id);
    this.local.set("conversations", ids.slice(-20));
  }

  /** Load cached events so a reloaded page shows the conversation before the resume answers. */
  #restoreFromCache() {
    for (const id of this.#rememberedIds()) {
      const cached = this.sessionStore.get(`conversation.${id}`);
      if (!cached || !Array.isArray(cached.events)) continue;
      const conversation = this.conversation(id);
      if (cached.summary) conversation.summary = cached.summary;
      for (const read of cached.reads ?? []) conversation.reads.set(`${read.reader?.kind}:${read.reader?.id}`, read);
      // a resume that had not been answered before the reload: the next one starts there
      if ("missing_after" in cached) conversation.missingAfter = cached.missing_after;
      conversation.ingest(cached.events, { replay: true });
    }
  }

  /** Keep a conversation's events (bounded) in sessionStorage: the cursor survives a reload. */
  _persist(conversation) {
    if (!this.#rememberedIds().includes(conversation.id)) return;
    if (conversation.events.length > this.maxCachedEvents) {
      // Too long to cache: a reload resumes from the start instead (nothing is lost either way).
      this.sessionStore.remove(`conversation.${conversation.id}`);
      return;
    }
    this.sessionStore.set(`conversation.${conversation.id}`, {
      summary: conversation.summary,
      events: conversation.events,
      reads: [...conversation.reads.values()],
      ...(conversation.missingAfter === undefined ? {} : { missing_after: conversation.missingAfter }),
    });
  }
}

/**
 * An offer of a conversation to this agent. `accept()` resolves with the AgentConversation
 * (full log and the customer's history); `decline()` lets it go to the next agent.
 */
export class Offer {
  constructor(agent, payload) {
    this.agent = agent;
    this.conversation = payload.conversation;
    this.events = payload.events ?? [];
    this.history = payload.history ?? [];
    /** {id, pages}: the customer's page trail, newest first. */
    this.customer = payload.customer ?? null;
    this.kind = payload.kind ?? "new";
    this.fromAgent = payload.from_agent ?? null;
    this.expiresInS = payload.expires_in_s ?? null;
    this.expiresAt = this.expiresInS == null ? null : Date.now() + this.expiresInS * 1000;
    this.payload = payload;
  }

  get conversationId() {
    return this.conversation.id;
  }

  /** Seconds left before the offer goes to someone else (null: no deadline given). */
  get secondsLeft() {
    return this.expiresAt == null ? null : Math.max(0, Math.ceil((this.expiresAt - Date.now()) / 1000));
  }

  async accept() {
    const result = await this.agent.request("offer.accept", { conversation_id: this.conversationId });
    this.agent._dropOffer(this.conversationId);
    const conversation = this.agent._applyResult(result);
    this.agent.emit("assigned", conversation);
    return conversation;
  }

  async decline() {
    this.agent._dropOffer(this.conversationId);
    await this.agent.request("offer.decline", { conversation_id: this.conversationId });
  }
}

/**
 * The agent side (`/agent` namespace).
 *
 *   const agent = new SegueAgent();
 *   if (!agent.token) await agent.login("demo", "demo");
 *   await agent.connect();
 *   agent.on("offer", async (offer) => { const chat = await offer.accept(); await chat.send("Hi!"); });
 *   await agent.setPresence("available");
 *
 * Extra events: "offer" (Offer), "offer.revoked" ({conversation_id, reason}), "assigned"
 * (AgentConversation, after an accept), "queues" ([queue]), "agent" (agent), "logout" (reason).
 */
export class SegueAgent extends SegueClient {
  constructor(options = {}) {
    super("/agent", options);
    this.store = new SafeStorage("session", options.storagePrefix ?? "segue.agent.");
    /** The agent record from `session` / `presence.set`. */
    this.agent = null;
    /** Pending offers: conversation id → Offer. */
    this.offers = new Map();
    /** Latest queue stats. */
    this.queues = [];
    /** Reopen my conversations on connect (a wallboard may not want them). */
    this.autoOpen = options.autoOpen ?? true;
    /**
     * Watch-only connection (a wallboard): the server never offers it conversations and it does
     * not set presence, so a supervisor watching the board is not routed work by it.
     */
    this.watch = Boolean(options.watch);
    /** Calls this supervisor monitors: conversation id → SegueMonitor (see monitorCall). */
    this.monitors = new Map();
    this.#canned = null;
  }

  #canned;

  /** The login token (sessionStorage: it lasts as long as the tab). */
  get token() {
    return this.store.get("token");
  }

  /** `POST /api/v1/auth/login`; keeps the token. Resolves with the server's answer. */
  async login(username, password) {
    const response = await fetch(`${this.url}/api/v1/auth/login`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok || !body.token) {
      const error = body.error ?? {};
      throw new SegueError(error.code ?? "unauthorized", error.message ?? `login failed (HTTP ${response.status})`, {
        field: error.field,
      });
    }
    this.store.set("token", body.token);
    return body;
  }

  /**
   * `POST /api/v1/auth/logout` (the server ends this account's tokens and closes its sockets on
   * every node), then forget the token and disconnect. Signs out locally even when offline.
   */
  async logout() {
    const token = this.token;
    this.store.remove("token");
    this.disconnect();
    this.conversations.clear();
    this.offers.clear();
    this.agent = null;
    this.emit("logout", "logged out");
    if (!token) return;
    try {
      await fetch(`${this.url}/api/v1/auth/logout`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}` },
        keepalive: true, // completes even when the page is closing
      });
    } catch {
      /* offline: the token still expires by itself */
    }
  }

  /** Call the REST API with this agent's token: `await agent.api("GET", "/api/v1/agents")`. */
  async api(method, path, body) {
    const headers = { Authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(this.url + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = data.error ?? {};
      throw new SegueError(error.code ?? `http_${response.status}`, error.message ?? `${method} ${path} failed`, {
        field: error.field,
      });
    }
    return data;
  }

  _auth() {
    const auth = { v: PROTOCOL_VERSION, token: this.token };
    if (this.watch) auth.watch = true;
    return auth;
  }

  /**
   * Supervisors: listen to a live call, whisper to its agent or barge in. Resolves with the
   * conversation's `SegueMonitor` (web/sdk/call.js) once the server accepted the mode and our
   * connection is being set up; calling it again for the same conversation switches the mode
   * of the same monitor (no new connection).
   *
   *   const monitor = await agent.monitorCall(id, "listen");
   *   monitor.on("customerstream", (s) => a.srcObject = s); monitor.on("agentstream", (s) => b.srcObject = s);
   *   await monitor.setMode("whisper"); await monitor.stop();
   *
   * call.js is loaded on first use (it imports this module: a static import would be a cycle).
   */
  async monitorCall(conversationId, mode = "listen") {
    let monitor = this.monitors.get(conversationId);
    if (!monitor) {
      const { SegueMonitor } = await import("./call.js");
      monitor = this.monitors.get(conversationId) ?? new SegueMonitor(this, conversationId);
      this.monitors.set(conversationId, monitor);
    }
    try {
      await monitor.setMode(mode);
    } catch (error) {
      if (!monitor.mode && this.monitors.get(conversationId) === monitor) {
        // never started (no call, not allowed...): nothing to keep
        this.monitors.delete(conversationId);
        monitor.close();
      }
      throw error;
    }
    return monitor;
  }

  /** Supervisors: stop monitoring a call (our leg only; the call goes on) and forget its monitor. */
  async stopMonitoring(conversationId) {
    const monitor = this.monitors.get(conversationId);
    if (!monitor) return;
    this.monitors.delete(conversationId);
    try {
      await monitor.stop();
    } finally {
      monitor.close();
    }
  }

  _newConversation(id) {
    return new AgentConversation(this, id);
  }

  _onRefused(error) {
    if (error.code === "bad_token" || error.code === "unauthorized") {
      this.store.remove("token");
      this.emit("logout", error.message);
    }
  }

  _listen(socket) {
    socket.on("offer", (payload) => {
      if (!payload?.conversation?.id) return;
      const offer = new Offer(this, payload);
      this.offers.set(offer.conversationId, offer);
      this.emit("offer", offer);
    });
    socket.on("offer.revoked", (payload) => {
      if (!payload?.conversation_id) return;
      this._dropOffer(payload.conversation_id, payload.reason);
    });
    socket.on("agent", (payload) => {
      if (!payload?.agent) return;
      this.agent = payload.agent;
      this.emit("agent", this.agent);
    });
    socket.on("queues", (payload) => {
      this.queues = payload?.queues ?? [];
      this.emit("queues", this.queues);
    });
    // logged out elsewhere, password or role changed, account deleted: the server closes the socket next
    socket.on("session.ended", (payload) => {
      this.store.remove("token");
      this.emit("logout", payload?.message ?? "this session ended: log in again");
    });
  }

  _dropOffer(conversationId, reason) {
    if (!this.offers.delete(conversationId)) return;
    this.emit("offer.revoked", { conversation_id: conversationId, reason: reason ?? "handled" });
  }

  async _onSession(session, { first }) {
    this.agent = session?.agent ?? null;
    this.emit("agent", this.agent);
    if (first) {
      // A reloaded console gets its conversations back from the server: those assigned to me (a
      // supervisor's list holds every open conversation; watching them is the wallboard's business).
      if (this.autoOpen) {
        const me = this.agent?.id;
        const mine = (await this.listConversations()).filter(
          (s) => s.state !== "closed" && ((s.agent?.id ?? s.agent) === me || s.transfer?.to?.agent?.id === me),
        );
        await Promise.all(mine.map((s) => this.openConversation(s.id).catch((error) => this.emit("error", error))));
      }
    } else {
      await this._resync(undefined);
      // monitoring ends with the socket that held it: take it up again on a new connection
      for (const monitor of this.monitors.values()) monitor.resume().catch((error) => this.emit("error", error));
    }
    this.refreshQueues().catch(() => {});
  }

  async _resync(since) {
    const open = [...this.conversations.values()].filter((c) => !c.isClosed);
    await this._resumeAll(open, since, (_c, error) => this.emit("error", error));
  }

  /** "available" | "away" | "offline". Resolves with the updated agent record. */
  async setPresence(status) {
    const { agent } = await this.request("presence.set", { status });
    this.agent = agent ?? { ...(this.agent ?? {}), presence: status };
    this.emit("agent", this.agent);
    return this.agent;
  }

  /** Open a conversation (assigned, or an earlier one of a customer you served). */
  async openConversation(id) {
    return this._resume(this.conversation(id));
  }

  async _fetch(conversation, after) {
    const payload = { conversation_id: conversation.id };
    if (after) payload.after = after;
    return this._applyResult(await this.request("conversation.open", payload));
  }

  /** Summaries of conversations assigned to me (supervisors: every open one). */
  async listConversations() {
    const { conversations } = await this.request("conversations.list", {});
    return conversations;
  }

  /** Queue stats; also pushed as "queues". */
  async refreshQueues() {
    const { queues } = await this.request("queues.list", {});
    this.queues = queues ?? [];
    this.emit("queues", this.queues);
    return this.queues;
  }

  /** Canned replies `[{id, title, text}]` (cached after the first call; `refresh` to reload). */
  async cannedReplies({ refresh = false } = {}) {
    if (!this.#canned || refresh) {
      const { replies } = await this.request("canned.list", {});
      this.#canned = replies ?? [];
    }
    return this.#canned;
  }

  /**
   * Search the conversations this agent may read (GET /api/v1/search, docs/knowledge.md):
   * `{q?, customer?, from?, to?, limit?}` (at least words, a customer or a date) →
   * `{results: [{conversation, event, snippet: {text, highlights}, score}], more}`.
   */
  async search({ q, customer, from, to, limit } = {}) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries({ q, customer, from, to, limit })) {
      if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
    }
    return this.api("GET", `/api/v1/search?${params}`);
  }

  /** Published articles and canned replies matching the customer's latest messages: `{articles, replies}`. */
  async suggestions(conversationId) {
    return this.api("GET", `/api/v1/conversations/${encodeURIComponent(conversationId)}/suggestions`);
  }

  /** Forget a conversation locally (e.g. closing its panel). It stays on the server. */
  dropConversation(id) {
    this.conversations.delete(id);
  }
}
