/**
 * One conversation column in the agent console: header with channel markers, the customer's
 * context and earlier conversations, the full log (messages, system events, internal notes,
 * consult messages), the typing indicator and a composer with reply / note / consult modes and
 * canned replies. All text is rendered as text.
 */
import { compareIds } from "../sdk/segue.js";
import { h, append, clear, placeEvent, appendPending, markFailed, markReceipts } from "../sdk/dom.js";
import { describeEvent, formatTime, channelLabel, eventChannel, personName } from "../sdk/format.js";
import { SegueCall } from "../sdk/call.js";
import { CallBar } from "../sdk/call-ui.js";
import { english } from "../sdk/i18n.js";
import { agentView, channelsNow, channelsUsed, callPhase, text as viewText } from "../sdk/view-state.js";
import { CustomerHistory } from "./history.js";
import { Suggestions } from "./suggest.js";

/** How long apart two views of the same URL still count as one (the server's repeat window). */
const SAME_VIEW_MS = 5000;

/**
 * The customer's page trail, newest first (at most `limit`): the trail the server sent when the
 * conversation was opened (`customer.pages`) plus the `page.viewed` events logged since.
 */
export function pageTrail(conversation, limit = 50) {
  const pages = [...(conversation.customer?.pages ?? [])];
  for (const event of conversation.events) {
    if (event.type !== "page.viewed" || !event.data?.url) continue;
    const known = pages.some((p) => p.url === event.data.url && Math.abs((p.ts ?? 0) - event.ts) < SAME_VIEW_MS);
    if (!known) pages.push({ url: event.data.url, title: event.data.title, ts: event.ts });
  }
  pages.sort((a, b) => (b.ts ?? 0) - (a.ts ?? 0));
  return pages.slice(0, limit);
}

export { agentId } from "../sdk/view-state.js";
import { agentId, agentName as agentLabel } from "../sdk/view-state.js";

export function customerLabel(summary, t = english) {
  const customer = summary?.customer;
  return personName(customer?.name, t) || customer?.email || customer?.id || t("console.customer");
}

export class ConversationPanel {
  /**
   * @param app  the console: {agent, openHistory(id), openTransfer(panel), openClose(panel), removePanel(id), changed(panel)}
   * @param conversation an AgentConversation
   */
  constructor(app, conversation) {
    this.app = app;
    this.conversation = conversation;
    this.mode = "reply";
    this.unread = 0;
    this.typingTimer = null;
    /** the conversation's SegueCall while this agent works on it (docs/calls.md) */
    this.call = null;
    this.callBar = null;
    this.build();
    // articles and canned replies matching the customer's words, above the composer (suggest.js)
    this.suggestions = new Suggestions(app, this, this.t);
    this.composer.before(this.suggestions.element);
    const c = conversation;
    this.unsubscribe = [
      c.on("event", (event, { replay }) => this.onEvent(event, replay)),
      c.on("conversation", () => this.renderState()),
      c.on("typing", (t) => this.renderTyping(t)),
      c.on("read", () => this.renderReceipts()),
      c.on("pending", ({ client_id: id, text }) => this.renderPending(id, text)),
      c.on("failed", ({ client_id: id, error }) => this.renderFailed(id, error)),
    ];
    for (const event of c.events) this.renderEvent(event);
    this.renderState();
    this.log.scrollTop = this.log.scrollHeight;
  }

  get me() {
    return this.app.agent.agent;
  }

  get id() {
    return this.conversation.id;
  }

  destroy() {
    this.dropCall();
    this.historyView.destroy();
    this.suggestions?.destroy();
    for (const off of this.unsubscribe) off();
    clearTimeout(this.typingTimer);
    this.element.remove();
  }

  /* ---- building ------------------------------------------------------------------------ */

  build() {
    const t = this.t;
    this.title = h("h3", { class: "conv-title" });
    this.stateBadge = h("span", { class: "conv-state" });
    this.channels = h("span", { class: "conv-channels" });
    this.meta = h("div", { class: "conv-meta" });
    this.transferButton = h("button", { type: "button", class: "segue-btn segue-btn--ghost segue-btn--small conv-transfer", onclick: () => this.app.openTransfer(this) }, t("console.panel.transfer"));
    this.closeButton = h("button", { type: "button", class: "segue-btn segue-btn--ghost segue-btn--small conv-close", onclick: () => this.app.openClose(this) }, t("console.panel.close"));
    this.dismissButton = h(
      "button",
      { type: "button", class: "segue-icon-btn conv-dismiss", "aria-label": t("console.panel.hide.label"), title: t("console.panel.hide"), onclick: () => this.app.removePanel(this.id) },
      "×",
    );

    this.context = h("div", { class: "conv-context" });
    this.banner = h("div", { class: "conv-banner", hidden: true });
    this.callSlot = h("div", { class: "conv-call" });
    // the customer panel beside the conversation (issue 12): who they are, what they set and
    // viewed, who handled this conversation before, and every earlier conversation with its
    // transcript, calls (length, recording), wrap-up and CSAT
    this.who = h("div", { class: "conv-who" });
    this.handled = h("section", { class: "conv-handled", hidden: true });
    // this conversation so far: channels with time on each, its calls (length, recording)
    this.thisChannels = h("div", { class: "conv-this-channels" });
    this.thisCalls = { summary: {}, calls: h("ul", { class: "history-calls" }) };
    this.thisSection = h(
      "section",
      { class: "conv-this" },
      h("h4", { class: "conv-customer-head" }, t("console.this")),
      this.thisChannels,
      this.thisCalls.calls,
    );
    this.historyView = new CustomerHistory(this.app, this, t);
    this.history = this.historyView.element;
    // the customer: custom attributes set by the site (live) and the pages they looked at
    this.attributesList = h("dl", { class: "conv-attributes" });
    this.pagesList = h("ol", { class: "conv-pages" });
    this.pagesCount = h("span", { class: "count" }, "0");
    this.customerSection = h(
      "details",
      { class: "conv-customer", open: true },
      h("summary", {}, t("console.customer")),
      h("h4", { class: "conv-customer-head" }, t("console.attributes")),
      this.attributesList,
      h("h4", { class: "conv-customer-head" }, t("console.pages"), " ", this.pagesCount),
      this.pagesList,
    );

    this.log = h("ol", { class: "segue-log conv-log", "aria-live": "polite" });
    this.typing = h("div", { class: "segue-typing conv-typing", hidden: true });
    this.error = h("div", { class: "segue-error conv-error", role: "alert", hidden: true });
    this.readOnlyNote = h("div", { class: "conv-readonly", hidden: true });

    this.modeButtons = ["reply", "note", "consult"].map((mode) =>
      h(
        "button",
        { type: "button", class: "mode-btn", dataset: { mode }, onclick: () => this.setMode(mode) },
        t(`console.mode.${mode}`),
      ),
    );
    this.cannedButton = h("button", { type: "button", class: "segue-btn segue-btn--ghost segue-btn--small canned-btn", onclick: () => this.toggleCanned() }, t("console.canned"));
    this.cannedFilter = h("input", { type: "text", class: "canned-filter", placeholder: t("console.canned.filter"), "aria-label": t("console.canned.filter"), oninput: () => this.renderCanned() });
    this.cannedList = h("ul", { class: "canned-list" });
    this.cannedPicker = h("div", { class: "canned-picker", hidden: true }, this.cannedFilter, this.cannedList);
    this.input = h("textarea", {
      class: "conv-input",
      rows: 2,
      maxlength: 4000,
      placeholder: t("console.placeholder.reply"),
      "aria-label": t("console.message.label"),
      oninput: () => {
        if (this.mode === "reply") this.conversation.noteTyping();
      },
      onkeydown: (e) => {
        if (e.key === "Enter" && !e.shiftKey) {
          e.preventDefault();
          this.submit();
        } else if (e.key === "Escape") this.cannedPicker.hidden = true;
      },
    });
    this.sendButton = h("button", { type: "submit", class: "segue-btn conv-send" }, t("console.send.reply"));
    this.composer = h(
      "form",
      { class: "conv-composer", dataset: { mode: "reply" }, onsubmit: (e) => (e.preventDefault(), this.submit()) },
      h("div", { class: "conv-composer-tools" }, h("div", { class: "mode-switch", role: "tablist" }, this.modeButtons), this.cannedButton),
      this.cannedPicker,
      h("div", { class: "conv-composer-row" }, this.input, this.sendButton),
    );

    this.aside = h(
      "aside",
      { class: "conv-aside", "aria-label": t("console.customer") },
      this.who,
      this.thisSection,
      this.customerSection,
      this.handled,
      this.history,
    );
    this.element = h(
      "section",
      { class: "conv-panel", dataset: { conversationId: this.conversation.id } },
      h(
        "header",
        { class: "conv-head" },
        h("div", { class: "conv-head-main" }, h("div", { class: "conv-title-row" }, this.title, this.stateBadge), h("div", { class: "conv-sub" }, this.meta, this.channels)),
        h("div", { class: "conv-actions" }, this.transferButton, this.closeButton, this.dismissButton),
      ),
      h(
        "div",
        { class: "conv-body" },
        h(
          "div",
          { class: "conv-main" },
          this.context,
          this.banner,
          this.callSlot,
          this.log,
          this.typing,
          this.error,
          this.readOnlyNote,
          this.composer,
        ),
        this.aside,
      ),
    );
    this.element.addEventListener("focusin", () => this.markRead());
    this.element.addEventListener("click", () => this.markRead());
    this.setMode("reply");
  }

  /* ---- state ----------------------------------------------------------------------------- */

  /** How the conversation stands for me (web/sdk/view-state.js: the one place that decides). */
  get view() {
    return agentView(this.conversation, this.me?.id);
  }

  /** Whether this agent may write here: open, and assigned to me (or a warm transfer to me was accepted). */
  get canWrite() {
    return this.view.canWrite;
  }

  renderState() {
    const c = this.conversation;
    const s = c.summary ?? {};
    const t = this.t;
    const view = this.view;
    this.title.textContent = customerLabel(s, t);
    this.stateBadge.textContent = t(view.badge.key);
    this.stateBadge.dataset.state = view.badge.state;
    this.element.dataset.role = view.role;
    this.meta.textContent = [s.queue && t("console.queue", { queue: s.queue }), s.agent && t("console.agent", { agent: agentLabel(s.agent) }), s.customer?.email].filter(Boolean).join(" · ");
    clear(this.channels);
    for (const channel of channelsNow(s)) {
      this.channels.append(h("span", { class: "chan", dataset: { channel } }, channelLabel(channel, t)));
    }
    this.renderContext();
    this.renderWho();
    this.renderCustomer();
    this.renderHandled();
    this.renderThis();
    this.renderHistory();

    const writable = view.canWrite;
    const closed = c.isClosed;
    this.composer.hidden = !writable;
    this.transferButton.hidden = !writable || Boolean(c.pendingTransfer);
    this.closeButton.hidden = !writable;
    this.dismissButton.hidden = writable;
    this.element.classList.toggle("conv-panel--readonly", !writable);
    this.readOnlyNote.hidden = writable;
    this.readOnlyNote.textContent = view.note ? viewText(view.note, t) : "";
    if (view.role === "transferred") this.follow();
    if (closed) this.typing.hidden = true;
    this.renderBanner();
    this.syncCall(writable);
    this.renderReceipts();
    this.app.changed(this);
  }

  /* ---- call ------------------------------------------------------------------------------ */

  /**
   * A conversation I work on has a SegueCall and a call bar; `refresh()` attaches my connection
   * to a running call (after a reload, or after accepting a transfer). When it stops being mine
   * (transferred away, closed) the connection is closed: the call goes on without me.
   */
  syncCall(writable) {
    if (writable && !this.call && this.app.agent.socket) {
      this.call = new SegueCall(this.app.agent, this.id);
      this.callBar = new CallBar(this.call, { kind: "agent", onError: (error) => this.showError(error), t: this.t });
      this.callSlot.append(this.callBar.element);
      this.offCall = this.call.on("state", () => this.answerWhenRinging());
      this.refreshCall();
    } else if (!writable && this.call) {
      this.dropCall();
    }
  }

  refreshCall() {
    this.call?.refresh().catch((error) => this.showError(error));
  }

  /**
   * Accepting an offer that is a call from the web answers the call too (`answerCall`, set by the
   * console): one click, not a second Accept on "Visitor is calling".
   */
  answerWhenRinging() {
    if (!this.answerCall || !this.callBar) return;
    const state = this.call?.state;
    if (callPhase(state) !== "ringing" || state.requested_by?.kind !== "customer") return;
    this.answerCall = false;
    this.callBar.accept().catch((error) => this.showError(error));
  }

  dropCall() {
    this.offCall?.();
    this.offCall = null;
    this.callBar?.destroy();
    this.call?.close();
    this.call = null;
    this.callBar = null;
  }

  renderContext() {
    const created = this.conversation.events.find((e) => e.type === "conversation.created");
    const context = created?.data?.context ?? {};
    const parts = [];
    if (context.page_title) parts.push(context.page_title);
    if (context.page_url) parts.push(context.page_url);
    this.context.textContent = parts.length ? this.t("console.panel.from", { where: parts.join(" — ") }) : "";
    this.context.hidden = !parts.length;
  }

  /** The warm-transfer banner: who is consulting whom, and the hand-over buttons. */
  renderBanner() {
    const pending = this.conversation.pendingTransfer;
    const warm = Boolean(pending && pending.mode === "warm");
    this.modeButtons[2].hidden = !warm;
    if (!warm && this.mode === "consult") this.setMode("reply");
    clear(this.banner);
    if (!pending || !this.canWrite) {
      this.banner.hidden = true;
      return;
    }
    const t = this.t;
    const me = this.me?.id;
    const to = pending.to ?? {};
    const toText = to.agent ? agentLabel(to.agent) : t("who.queue", { queue: to.queue });
    if (agentId(to.agent) === me) {
      this.banner.append(h("span", {}, t("console.banner.warm_to_me", { agent: agentLabel(pending.from_agent) || t("who.an_agent") })));
    } else if (warm) {
      this.banner.append(
        h("span", {}, t(pending.accepted ? "console.banner.accepted" : "console.banner.waiting", { target: toText })),
        h(
          "button",
          { type: "button", class: "segue-btn segue-btn--small transfer-complete", disabled: !pending.accepted, onclick: () => this.completeTransfer() },
          t("console.banner.complete"),
        ),
        h("button", { type: "button", class: "segue-btn segue-btn--ghost segue-btn--small transfer-cancel", onclick: () => this.cancelTransfer() }, t("console.banner.cancel")),
      );
    } else {
      this.banner.append(h("span", {}, t("console.banner.pending", { target: toText })));
    }
    this.banner.hidden = false;
  }

  /** Words of the console (i18n.js, in the locale the console picked: locale.js). */
  get t() {
    return this.app.t ?? english;
  }

  /** The customer section: attributes from the summary, the page trail (latest first). */
  renderCustomer() {
    const t = this.t;
    const attributes = Object.entries(this.conversation.summary?.attributes ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    clear(this.attributesList);
    for (const [key, value] of attributes) {
      this.attributesList.append(
        h("div", { class: "conv-attribute", dataset: { key } }, h("dt", {}, key), h("dd", {}, String(value))),
      );
    }
    if (!attributes.length) this.attributesList.append(h("div", { class: "muted small" }, t("console.attributes.none")));
    const pages = pageTrail(this.conversation);
    this.pagesCount.textContent = String(pages.length);
    clear(this.pagesList);
    for (const page of pages) {
      this.pagesList.append(
        h(
          "li",
          { class: "conv-page" },
          page.title ? h("span", { class: "conv-page-title" }, page.title) : null,
          h("span", { class: "conv-page-url" }, page.url),
          h("time", { class: "conv-page-time", datetime: new Date(page.ts ?? Date.now()).toISOString() }, formatTime(page.ts, t)),
        ),
      );
    }
    if (!pages.length) this.pagesList.append(h("li", { class: "muted small" }, t("console.pages.none")));
  }

  renderHistory() {
    this.historyView.render(this.conversation.history ?? []);
  }

  /**
   * A conversation I handed on stays in view, read-only: the server stops sending me its changes
   * once I left it, so the panel opens it again (the watch room) and keeps following it.
   */
  follow() {
    if (this.following || !this.app.agent.socket) return;
    this.following = true;
    this.app.agent.openConversation(this.id).catch(() => (this.following = false));
  }

  /** This conversation's wrap-up so far (the summary's): channels used with time on each, its calls. */
  renderThis() {
    const t = this.t;
    const s = this.conversation.summary ?? {};
    this.thisChannels.textContent = channelsUsed(s)
      .map(([c, seconds]) => (seconds == null ? channelLabel(c, t) : t("console.channel_time", { channel: channelLabel(c, t), duration: t.duration(seconds) })))
      .join(" · ");
    this.thisCalls.summary = s;
    this.historyView.renderCalls(this.thisCalls);
  }

  /** Who the customer is: name, verified identity or visitor, email, id. */
  renderWho() {
    const t = this.t;
    const customer = this.conversation.summary?.customer ?? {};
    clear(this.who);
    append(this.who, [
      h("div", { class: "conv-who-name" }, customerLabel({ customer }, t)),
      h(
        "div",
        { class: "conv-who-kind", dataset: { verified: customer.verified ? "true" : "false" } },
        t(customer.verified ? "console.customer.verified" : "console.customer.visitor"),
      ),
      customer.email ? h("div", { class: "conv-who-email" }, h("span", { class: "muted" }, t("console.customer.email"), ": "), customer.email) : null,
      customer.id ? h("div", { class: "conv-who-id muted small" }, t("console.customer.id"), ": ", customer.id) : null,
    ]); // dom.js append skips the missing parts (Element.append would write "null")
  }

  /** For a transferred conversation: who handled it before, how it was handed over, the note. */
  renderHandled() {
    const t = this.t;
    const s = this.conversation.summary ?? {};
    const items = [];
    for (const transfer of s.transfers ?? []) {
      const to = transfer.to?.agent ? agentLabel(transfer.to.agent) : transfer.to?.queue ?? "";
      items.push(
        h(
          "li",
          { class: "conv-handled-item" },
          h("div", {}, t("console.handled.transfer", { from: agentLabel(transfer.from_agent), to, mode: t(transfer.mode === "warm" ? "transfer.mode.warm" : "transfer.mode.cold") })),
          transfer.note ? h("div", { class: "conv-handled-note" }, t("console.handled.note", { note: transfer.note })) : null,
        ),
      );
    }
    const pending = s.transfer;
    if (pending?.from_agent) {
      const to = pending.to?.agent ? agentLabel(pending.to.agent) : pending.to?.queue ?? "";
      const requested = [...this.conversation.events].reverse().find((e) => e.type === "transfer.requested");
      const note = requested?.data?.note;
      items.push(
        h(
          "li",
          { class: "conv-handled-item conv-handled-item--pending" },
          h("div", {}, t("console.handled.pending", { from: agentLabel(pending.from_agent), to })),
          note ? h("div", { class: "conv-handled-note" }, t("console.handled.note", { note })) : null,
        ),
      );
    }
    clear(this.handled);
    this.handled.hidden = !items.length;
    if (items.length) this.handled.append(h("h4", { class: "conv-customer-head" }, t("console.handled")), h("ul", { class: "conv-handled-list" }, items));
  }

  setMode(mode) {
    this.mode = mode;
    this.composer.dataset.mode = mode;
    for (const button of this.modeButtons) button.classList.toggle("mode-btn--on", button.dataset.mode === mode);
    this.input.placeholder = this.t(`console.placeholder.${mode}`);
    this.sendButton.textContent = this.t(`console.send.${mode}`);
    if (mode !== "reply") this.conversation.setTyping(false);
  }

  /* ---- actions ----------------------------------------------------------------------------- */

  async submit() {
    const text = this.input.value;
    if (!text.trim()) return;
    const mode = this.mode;
    this.input.value = "";
    this.cannedPicker.hidden = true;
    try {
      if (mode === "note") await this.conversation.addNote(text);
      else if (mode === "consult") await this.conversation.consult(text);
      else await this.conversation.send(text);
    } catch (error) {
      if (mode !== "reply") this.input.value = text; // the reply keeps its failed bubble with Retry
      this.showError(error);
    }
  }

  async completeTransfer() {
    try {
      await this.conversation.completeTransfer();
    } catch (error) {
      this.showError(error);
    }
  }

  async cancelTransfer() {
    try {
      await this.conversation.cancelTransfer();
    } catch (error) {
      this.showError(error);
    }
  }

  async toggleCanned() {
    if (!this.cannedPicker.hidden) {
      this.cannedPicker.hidden = true;
      return;
    }
    try {
      this.canned = await this.app.agent.cannedReplies();
    } catch (error) {
      this.showError(error);
      return;
    }
    this.cannedFilter.value = "";
    this.renderCanned();
    this.cannedPicker.hidden = false;
    this.cannedFilter.focus();
  }

  renderCanned() {
    const filter = this.cannedFilter.value.trim().toLowerCase();
    clear(this.cannedList);
    const replies = (this.canned ?? []).filter((r) => !filter || `${r.title} ${r.text}`.toLowerCase().includes(filter));
    if (!replies.length) this.cannedList.append(h("li", { class: "muted small" }, this.t("console.canned.none")));
    for (const reply of replies) {
      this.cannedList.append(
        h(
          "li",
          {},
          h(
            "button",
            { type: "button", class: "canned-item", dataset: { cannedId: String(reply.id) }, onclick: () => this.useCanned(reply) },
            h("strong", {}, reply.title),
            h("span", { class: "canned-preview" }, reply.text),
          ),
        ),
      );
    }
  }

  /** Fill the composer with the rendered reply, for editing before sending. */
  async useCanned(reply) {
    let text = reply.text;
    try {
      text = await this.conversation.renderCanned(reply.id);
    } catch (error) {
      this.showError(error);
    }
    this.cannedPicker.hidden = true;
    if (this.mode !== "reply") this.setMode("reply");
    const { value, selectionStart, selectionEnd } = this.input;
    this.input.value = value.slice(0, selectionStart) + text + value.slice(selectionEnd);
    this.input.focus();
    const caret = selectionStart + text.length;
    this.input.setSelectionRange(caret, caret);
  }

  markRead() {
    if (document.visibilityState === "hidden" || !this.canWrite) return;
    const theirs = this.conversation.events.filter((e) => e.author?.kind === "customer");
    if (theirs.length) this.conversation.markRead(theirs[theirs.length - 1].id);
    this.unread = 0;
    this.app.changed(this);
  }

  showError(error) {
    this.error.textContent = this.t.error(error, "console");
    this.error.hidden = false;
    clearTimeout(this.errorTimer);
    this.errorTimer = setTimeout(() => (this.error.hidden = true), 8000);
  }

  /* ---- rendering ------------------------------------------------------------------------- */

  onEvent(event, replay) {
    const nearBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 80;
    this.renderEvent(event);
    if (nearBottom || event.author?.id === this.me?.id) this.log.scrollTop = this.log.scrollHeight;
    if (event.type === "message" && event.author?.kind === "customer") {
      this.typing.hidden = true;
      if (!replay) {
        if (this.element.contains(document.activeElement) && document.visibilityState === "visible") this.markRead();
        else this.unread += 1;
      }
    }
    if (event.type === "conversation.created") this.renderContext();
    this.renderState();
  }

  renderEvent(event) {
    placeEvent(this.log, event, (e) => this.eventElement(e), compareIds);
  }

  eventElement(event) {
    const t = this.t;
    const { kind, text } = describeEvent(event, { viewer: "agent", customerName: this.conversation.summary?.customer?.name, t });
    const channel = eventChannel(event);
    const chan = channel ? h("span", { class: "chan chan--small", dataset: { channel } }, channelLabel(channel, t)) : null;
    const time = h("time", { datetime: new Date(event.ts ?? Date.now()).toISOString() }, formatTime(event.ts, t));
    const internal = event.visibility === "agents";
    if (kind === "system") {
      return h(
        "li",
        { class: `segue-system${internal ? " segue-system--internal" : ""}`, dataset: { eventId: event.id, type: event.type } },
        chan,
        chan && " ",
        text,
        " · ",
        time,
      );
    }
    const author = event.author ?? {};
    if (kind === "note" || kind === "consult") {
      return h(
        "li",
        { class: `ev-internal ev-${kind}`, dataset: { eventId: event.id, type: event.type } },
        h("div", { class: "ev-internal-head" }, t(`console.mode.${kind}`), " · ", author.name || author.id || t("console.transfer.agent"), " · ", time),
        h("div", { class: "ev-internal-text" }, text),
      );
    }
    const fromCustomer = author.kind === "customer";
    const mine = author.kind === "agent" && author.id === this.me?.id;
    return h(
      "li",
      {
        class: `segue-msg ${fromCustomer ? "segue-msg--theirs" : mine ? "segue-msg--mine" : "segue-msg--colleague"}`,
        dataset: { eventId: event.id, clientId: event.data?.client_id ?? "", author: author.kind ?? "" },
      },
      !mine && h("div", { class: "segue-msg-author" }, personName(author.name, t) || (fromCustomer ? t("console.customer") : author.id) || ""),
      h("div", { class: "segue-msg-text" }, text),
      h("div", { class: "segue-msg-meta" }, time, !fromCustomer && h("span", { class: "segue-receipt" }, t("receipt.sent"))),
    );
  }

  renderPending(clientId, text) {
    appendPending(this.log, clientId, text, this.t);
  }

  renderFailed(clientId, error) {
    markFailed(this.log, clientId, error, (text) =>
      this.conversation.send(text, { clientId }).catch((e) => this.showError(e)),
    this.t);
  }

  renderReceipts() {
    markReceipts(this.log, ".segue-msg[data-author=agent]", this.conversation.readUpTo("customer"), compareIds, this.t);
  }

  renderTyping({ author, typing }) {
    if (author?.kind === "agent" && author?.id === this.me?.id) return;
    clearTimeout(this.typingTimer);
    if (!typing) {
      this.typing.hidden = true;
      return;
    }
    const name = personName(author?.name, this.t) || this.t(author?.kind === "customer" ? "who.customer" : "who.agent");
    this.typing.textContent = this.t("widget.typing", { name });
    this.typing.hidden = false;
    this.typingTimer = setTimeout(() => (this.typing.hidden = true), 8000);
  }
}
