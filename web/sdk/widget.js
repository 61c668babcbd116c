/**
 * Segue's embeddable chat launcher.
 *
 *   <link rel="stylesheet" href="https://segue.example/sdk/segue.css">
 *   <script type="module">
 *     import { mountChatWidget } from "https://segue.example/widget/widget.js";
 *     mountChatWidget({ url: "https://segue.example", queue: "general" });
 *   </script>
 *
 * A launcher button opens a chat panel: queue position and estimated wait, messages, typing
 * indicator, read receipts, "agent joined / transferred" lines, rating after the chat closes,
 * and the whole conversation again after a reload. All text is rendered as text.
 */
import { SegueCustomer, compareIds } from "./segue.js";
import { h, clear, placeEvent, appendPending, markFailed, markReceipts } from "./dom.js";
import { describeEvent, formatTime, formatDuration } from "./format.js";
import { SegueCall } from "./call.js";
import { CallBar } from "./call-ui.js";

const PANEL_OPEN_KEY = "segue.widget.open";

/**
 * Mount the launcher and panel. Options:
 *   url        Segue server (default: this page's origin)
 *   queue      queue for new conversations (default: the server's default queue)
 *   queues     [{name, label}] to let the visitor pick a topic (optional)
 *   site, identity   a verified identity from your server (see docs/sdk.md)
 *   title      panel title (default "Chat with us")
 *   container  where to mount (default document.body)
 * Returns {customer, open(), close(), element, callButton, conversation, call}.
 * `call` is the SegueCall of the shown conversation (one per open conversation; docs/calls.md).
 */
export function mountChatWidget(options = {}) {
  const widget = new ChatWidget(options);
  widget.mount(options.container ?? document.body);
  return widget;
}

/** A speech-bubble icon (static SVG: no emoji font needed). */
function chatIcon() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "20");
  svg.setAttribute("height", "20");
  svg.setAttribute("aria-hidden", "true");
  svg.classList.add("segue-launcher-icon");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("fill", "currentColor");
  path.setAttribute("fill-rule", "evenodd");
  path.setAttribute("d", "M4 3h16a2 2 0 0 1 2 2v11a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zm3 6.5a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01zm5 0a1.5 1.5 0 1 0 0 .01z");
  svg.append(path);
  return svg;
}

class ChatWidget {
  constructor(options) {
    this.options = options;
    this.customer = new SegueCustomer({ url: options.url, site: options.site, identity: options.identity });
    this.conversation = null;
    this.unsubscribe = [];
    this.unread = 0;
    this.typingTimer = null;
    /** conversation id → SegueCall (one per open conversation) */
    this.calls = new Map();
    this.call = null;
    this.callBar = null;
  }

  /* ---- DOM ---------------------------------------------------------------------------- */

  mount(container) {
    const title = this.options.title ?? "Chat with us";
    this.badge = h("span", { class: "segue-badge", hidden: true });
    this.launcher = h(
      "button",
      { id: "segue-launcher", class: "segue-launcher", type: "button", "aria-expanded": "false", onclick: () => this.toggle() },
      chatIcon(),
      (this.launcherLabel = h("span", { class: "segue-launcher-label" }, title)),
      this.badge,
    );

    this.status = h("div", { id: "segue-status", class: "segue-status" }, "Connecting…");
    this.callButton = h(
      "button",
      { id: "segue-call", class: "segue-btn segue-btn--ghost", type: "button", title: "Talk to us by voice", onclick: () => this.callUs() },
      "Call us",
    );
    this.endButton = h(
      "button",
      { id: "segue-end", class: "segue-btn segue-btn--ghost", type: "button", hidden: true, onclick: () => this.endChat() },
      "End chat",
    );
    const minimize = h(
      "button",
      { class: "segue-icon-btn", type: "button", "aria-label": "Minimise chat", onclick: () => this.close() },
      "–",
    );

    // Pre-chat: pick a topic (optional), say what it's about, start.
    this.startText = h("textarea", { id: "segue-start-text", rows: 3, placeholder: "How can we help? (optional)", maxlength: 4000 });
    // Anonymous visitors may say who they are (a verified identity brings its own name).
    this.startName = h("input", { id: "segue-start-name", type: "text", placeholder: "Your name (optional)", maxlength: 128, autocomplete: "name" });
    this.topic = null;
    const topics = this.options.queues ?? [];
    if (topics.length > 1) {
      this.topic = h(
        "select",
        { id: "segue-topic", "aria-label": "Topic" },
        topics.map((q) => h("option", { value: q.name, selected: q.name === this.options.queue }, q.label ?? q.name)),
      );
    }
    this.startForm = h(
      "form",
      { id: "segue-start", class: "segue-start", onsubmit: (e) => (e.preventDefault(), this.startChat()) },
      h("p", { class: "segue-start-intro" }, "Hi! Send us a message and the next available person will answer."),
      this.topic && h("label", { class: "segue-field" }, h("span", {}, "Topic"), this.topic),
      !this.options.identity && this.startName,
      this.startText,
      h("button", { id: "segue-start-btn", class: "segue-btn", type: "submit" }, "Start chat"),
    );

    this.position = h("div", { id: "segue-position", class: "segue-position", hidden: true });
    this.callSlot = h("div", { id: "segue-call-slot", class: "segue-call-slot" });
    this.log = h("ol", { id: "segue-log", class: "segue-log", "aria-live": "polite" });
    this.typing = h("div", { id: "segue-typing", class: "segue-typing", hidden: true });
    this.error = h("div", { id: "segue-error", class: "segue-error", role: "alert", hidden: true });

    this.input = h("textarea", {
      id: "segue-input",
      rows: 1,
      placeholder: "Type a message…",
      maxlength: 4000,
      "aria-label": "Message",
      oninput: () => this.conversation?.noteTyping(),
      onkeydown: (e) => {
        if (e.key === "Enter" && !e.shiftKey) {
          e.preventDefault();
          this.sendFromComposer();
        }
      },
    });
    this.composer = h(
      "form",
      { id: "segue-composer", class: "segue-composer", hidden: true, onsubmit: (e) => (e.preventDefault(), this.sendFromComposer()) },
      this.input,
      h("button", { id: "segue-send", class: "segue-btn", type: "submit" }, "Send"),
    );

    this.rating = this.buildRating();

    this.panel = h(
      "section",
      { id: "segue-panel", class: "segue-panel", hidden: true, "aria-label": title },
      h(
        "header",
        { class: "segue-panel-head" },
        h("div", {}, h("div", { class: "segue-panel-title" }, title), this.status),
        h("div", { class: "segue-panel-actions" }, this.callButton, this.endButton, minimize),
      ),
      this.startForm,
      this.position,
      this.callSlot,
      this.log,
      this.typing,
      this.error,
      this.rating,
      this.composer,
    );

    this.root = h("div", { class: "segue-widget" }, this.panel, this.launcher);
    this.element = this.root;
    container.append(this.root);

    this.listen();
    // Remembered conversations are already loaded from the cache: show the newest at once.
    const remembered = this.customer.rememberedConversations();
    if (remembered.length) this.show(remembered[remembered.length - 1]);
    else this.showStart();
    if (sessionStorage.getItem(PANEL_OPEN_KEY) === "1") this.open();
    this.customer.connect();
    this.attachCall();
  }

  buildRating() {
    this.ratingScore = 0;
    this.stars = [1, 2, 3, 4, 5].map((score) =>
      h(
        "button",
        {
          type: "button",
          class: "segue-star",
          dataset: { score: String(score) },
          "aria-label": `${score} of 5`,
          onclick: () => this.pickScore(score),
        },
        "★",
      ),
    );
    this.ratingComment = h("input", { id: "segue-rating-comment", type: "text", placeholder: "Anything to add? (optional)", maxlength: 1000 });
    this.ratingSubmit = h("button", { id: "segue-rate", class: "segue-btn", type: "submit", disabled: true }, "Send rating");
    this.ratingForm = h(
      "form",
      { class: "segue-rating-form", onsubmit: (e) => (e.preventDefault(), this.submitRating()) },
      h("p", {}, "How did we do?"),
      h("div", { class: "segue-stars", role: "group", "aria-label": "Rating" }, this.stars),
      this.ratingComment,
      this.ratingSubmit,
    );
    this.ratingThanks = h("p", { id: "segue-rating-thanks", class: "segue-rating-thanks", hidden: true }, "Thank you for your feedback!");
    const again = h("button", { id: "segue-new-chat", class: "segue-btn segue-btn--ghost", type: "button", onclick: () => this.newChat() }, "Start a new chat");
    return h("div", { id: "segue-rating", class: "segue-rating", hidden: true }, this.ratingForm, this.ratingThanks, again);
  }

  /* ---- panel ----------------------------------------------------------------------------- */

  toggle() {
    if (this.panel.hidden) this.open();
    else this.close();
  }

  open() {
    this.panel.hidden = false;
    this.root.classList.add("segue-widget--open");
    this.launcher.setAttribute("aria-expanded", "true");
    this.launcherLabel.textContent = "Hide chat";
    sessionStorage.setItem(PANEL_OPEN_KEY, "1");
    this.unread = 0;
    this.renderBadge();
    this.log.scrollTop = this.log.scrollHeight;
    this.markRead();
    (this.composer.hidden ? this.startText : this.input).focus();
  }

  close() {
    this.panel.hidden = true;
    this.root.classList.remove("segue-widget--open");
    this.launcher.setAttribute("aria-expanded", "false");
    this.launcherLabel.textContent = this.options.title ?? "Chat with us";
    sessionStorage.setItem(PANEL_OPEN_KEY, "0");
  }

  renderBadge() {
    this.badge.hidden = this.unread === 0;
    this.badge.textContent = String(this.unread);
  }

  showError(error) {
    this.error.textContent = error?.message ?? String(error);
    this.error.hidden = false;
    clearTimeout(this.errorTimer);
    this.errorTimer = setTimeout(() => (this.error.hidden = true), 8000);
  }

  /* ---- SDK wiring ------------------------------------------------------------------------ */

  listen() {
    const c = this.customer;
    c.on("session", () => {
      this.setStatus("Online", "online");
      // after a reload or a reconnect: a running call gets (or keeps) its connection
      this.attachCall()?.refresh().catch((error) => this.showError(error));
    });
    c.on("disconnect", () => this.setStatus("Reconnecting…", "offline"));
    c.on("connect_error", (error) =>
      this.setStatus(error.code === "unavailable" ? "Can't reach the server — retrying…" : error.message, "offline"),
    );
    c.on("error", (error) => this.showError(error));
  }

  setStatus(text, state) {
    this.status.textContent = text;
    this.status.dataset.state = state;
  }

  /** Render a conversation from scratch and follow it. */
  show(conversation) {
    for (const off of this.unsubscribe) off();
    this.conversation = conversation;
    this.startForm.hidden = true;
    clear(this.log);
    this.log.hidden = false;
    for (const event of conversation.events) this.renderEvent(event);
    for (const [clientId, text] of conversation.pending) this.renderPending(clientId, text);
    this.unsubscribe = [
      conversation.on("event", (event, { replay }) => this.onEvent(event, replay)),
      conversation.on("pending", ({ client_id: id, text }) => this.renderPending(id, text)),
      conversation.on("failed", ({ client_id: id, error }) => this.renderFailed(id, error)),
      conversation.on("conversation", () => this.renderState()),
      conversation.on("position", (p) => this.renderPosition(p)),
      conversation.on("typing", (t) => this.renderTyping(t)),
      conversation.on("read", () => this.renderReceipts()),
    ];
    this.renderState();
    this.renderReceipts();
    this.log.scrollTop = this.log.scrollHeight;
    this.attachCall();
  }

  /* ---- calls ------------------------------------------------------------------------------ */

  /** The SegueCall of the shown conversation (created once the socket exists), with its bar. */
  attachCall() {
    const conversation = this.conversation;
    if (!conversation || conversation.isClosed || !this.customer.socket) {
      this.detachCallBar();
      return null;
    }
    let call = this.calls.get(conversation.id);
    if (!call) {
      call = new SegueCall(this.customer, conversation.id);
      this.calls.set(conversation.id, call);
    }
    if (this.call !== call || !this.callBar) {
      this.detachCallBar();
      this.call = call;
      this.callBar = new CallBar(call, { kind: "customer", onError: (error) => this.showError(error) });
      this.callBar.element.id = "segue-callbar";
      this.offCall = [call.on("state", () => this.renderCallButton()), call.on("ended", () => this.renderCallButton())];
      this.callSlot.append(this.callBar.element);
    }
    this.renderCallButton();
    return call;
  }

  detachCallBar() {
    for (const off of this.offCall ?? []) off();
    this.offCall = [];
    this.callBar?.destroy();
    this.callBar = null;
    this.call = null;
    this.renderCallButton();
  }

  renderCallButton() {
    const state = this.call?.state?.state ?? "none";
    this.callButton.hidden = state !== "none" || Boolean(this.conversation?.isClosed);
    // a minimised widget still shows that a call is on
    this.root?.classList.toggle("segue-widget--in-call", state === "active");
  }

  /** "Call us": a voice call in the open conversation, or a new conversation straight into one. */
  async callUs() {
    this.callButton.disabled = true;
    try {
      if (this.panel.hidden) this.open();
      if (!this.conversation || this.conversation.isClosed) {
        this.customer.connect();
        const conversation = await this.customer.startConversation({
          queue: this.topic?.value || this.options.queue,
          channel: "voice",
          context: { page_url: location.href },
          name: (!this.options.identity && this.startName.value.trim()) || undefined,
        });
        this.show(conversation);
      }
      const call = this.attachCall();
      if (call && call.state.state === "none") await call.request("voice", { pageUrl: location.href });
    } catch (error) {
      this.showError(error);
    } finally {
      this.callButton.disabled = false;
      this.renderCallButton();
    }
  }

  showStart() {
    for (const off of this.unsubscribe) off();
    this.unsubscribe = [];
    this.detachCallBar();
    this.conversation = null;
    clear(this.log);
    this.log.hidden = true;
    this.position.hidden = true;
    this.typing.hidden = true;
    this.rating.hidden = true;
    this.composer.hidden = true;
    this.endButton.hidden = true;
    this.startForm.hidden = false;
  }

  async startChat() {
    const button = this.startForm.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      this.customer.connect(); // no-op when connected; if offline the request waits, then times out
      const conversation = await this.customer.startConversation({
        queue: this.topic?.value || this.options.queue,
        text: this.startText.value.trim() || undefined,
        name: (!this.options.identity && this.startName.value.trim()) || undefined,
      });
      this.startText.value = "";
      this.show(conversation);
      this.input.focus();
    } catch (error) {
      this.showError(error);
    } finally {
      button.disabled = false;
    }
  }

  async sendFromComposer() {
    const text = this.input.value;
    if (!text.trim() || !this.conversation) return;
    this.input.value = "";
    try {
      await this.conversation.send(text);
    } catch (error) {
      this.showError(error);
    }
  }

  async endChat() {
    if (!this.conversation || this.conversation.isClosed) return;
    try {
      await this.conversation.close();
    } catch (error) {
      this.showError(error);
    }
  }

  newChat() {
    this.detachCallBar();
    this.conversation?.forget();
    this.showStart();
    this.startText.focus();
  }

  pickScore(score) {
    this.ratingScore = score;
    this.stars.forEach((star, i) => star.classList.toggle("segue-star--on", i < score));
    this.ratingSubmit.disabled = false;
  }

  async submitRating() {
    if (!this.conversation || !this.ratingScore) return;
    this.ratingSubmit.disabled = true;
    try {
      await this.conversation.rate(this.ratingScore, this.ratingComment.value.trim() || undefined);
    } catch (error) {
      this.ratingSubmit.disabled = false;
      this.showError(error);
    }
  }

  markRead() {
    if (!this.conversation || this.panel.hidden || document.visibilityState === "hidden") return;
    // The newest event written by someone else.
    const theirs = this.conversation.events.filter((e) => e.author?.kind !== "customer");
    if (theirs.length) this.conversation.markRead(theirs[theirs.length - 1].id);
  }

  /* ---- rendering ------------------------------------------------------------------------- */

  onEvent(event, replay) {
    const nearBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 80;
    this.renderEvent(event);
    if (nearBottom || event.author?.kind === "customer") this.log.scrollTop = this.log.scrollHeight;
    if (event.type === "message" && event.author?.kind !== "customer") {
      this.hideTyping();
      if (this.panel.hidden && !replay) {
        this.unread += 1;
        this.renderBadge();
      }
    }
    if (!replay) this.markRead();
    this.renderState();
  }

  /** Insert an event's element at its place by id (events can arrive out of order after a resume). */
  renderEvent(event) {
    placeEvent(this.log, event, (e) => this.eventElement(e), compareIds);
  }

  eventElement(event) {
    const { kind, text } = describeEvent(event, { viewer: "customer" });
    if (kind === "note" || kind === "consult") return null; // never sent to customers anyway
    if (kind !== "message") {
      return h("li", { class: "segue-system", dataset: { eventId: event.id, type: event.type } }, text);
    }
    const mine = event.author?.kind === "customer";
    return h(
      "li",
      {
        class: `segue-msg ${mine ? "segue-msg--mine" : "segue-msg--theirs"}`,
        dataset: { eventId: event.id, clientId: event.data?.client_id ?? "" },
      },
      !mine && h("div", { class: "segue-msg-author" }, event.author?.name || "Agent"),
      h("div", { class: "segue-msg-text" }, text),
      h(
        "div",
        { class: "segue-msg-meta" },
        h("time", { datetime: new Date(event.ts ?? Date.now()).toISOString() }, formatTime(event.ts)),
        mine && h("span", { class: "segue-receipt" }, "Sent"),
      ),
    );
  }

  renderPending(clientId, text) {
    appendPending(this.log, clientId, text);
  }

  renderFailed(clientId, error) {
    markFailed(this.log, clientId, error, (text) =>
      this.conversation?.send(text, { clientId }).catch((e) => this.showError(e)),
    );
  }

  renderReceipts() {
    markReceipts(this.log, ".segue-msg--mine[data-event-id]", this.conversation?.readUpTo("agent"), compareIds);
  }

  renderTyping({ author, typing }) {
    if (author?.kind === "customer") return;
    clearTimeout(this.typingTimer);
    if (!typing) return this.hideTyping();
    this.typing.textContent = `${author?.name || "Agent"} is typing…`;
    this.typing.hidden = false;
    // If the "stopped" never comes (connection lost), don't show it forever.
    this.typingTimer = setTimeout(() => this.hideTyping(), 8000);
  }

  hideTyping() {
    this.typing.hidden = true;
  }

  renderPosition(position) {
    if (!position || !this.waiting()) {
      this.position.hidden = true;
      return;
    }
    const wait = position.estimated_wait_s;
    this.position.textContent =
      position.position != null
        ? `You are number ${position.position} in line${wait != null ? ` · estimated wait ${formatDuration(wait)}` : ""}`
        : "Waiting for an agent…";
    this.position.hidden = false;
  }

  waiting() {
    const state = this.conversation?.state;
    return state === "queued" || state === "offered";
  }

  renderState() {
    const conversation = this.conversation;
    if (!conversation) return;
    const closed = conversation.isClosed;
    if (closed && this.call?.conversationId === conversation.id) {
      this.call.close();
      this.calls.delete(conversation.id);
      this.detachCallBar();
    }
    this.renderCallButton();
    this.composer.hidden = closed;
    this.endButton.hidden = closed;
    this.renderPosition(conversation.position);
    if (closed) this.hideTyping();
    this.rating.hidden = !closed;
    const rated = conversation.rated;
    this.ratingForm.hidden = rated;
    this.ratingThanks.hidden = !rated;
    this.renderReceipts();
  }
}
