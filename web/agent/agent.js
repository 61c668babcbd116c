/**
 * The agent console: login, presence, queues, offers (accept / decline with a countdown),
 * conversations side by side, the customer's earlier conversations (read-only), transfer and
 * close dialogs. Built on the SDK (../sdk/segue.js); all text rendered as text.
 */
import { SegueAgent } from "../sdk/segue.js";
import { h, clear } from "../sdk/dom.js";
import { formatDuration, channelLabel } from "../sdk/format.js";
import { agentView, offerView, callPhase } from "../sdk/view-state.js";
import { ConversationPanel, customerLabel, agentId } from "./panel.js";
import { ConsoleSearch } from "./search.js";
import { KnowledgeEditor } from "./knowledge.js";
import { showDemoLogin } from "./demo-login.js";
import { PageLocale } from "./locale.js";

/** The presence menu's marks (its words come from the catalogue). */
const PRESENCE_MARKS = { available: "●", away: "◐", offline: "○" };

const $ = (selector) => document.querySelector(selector);

class Console {
  constructor() {
    this.agent = new SegueAgent();
    /** The console's language (locale.js): the agent's choice, else the browser's; words from web/sdk/i18n.js. */
    this.locale = new PageLocale(this.agent, {
      busy: () => [...this.panels.values()].some((panel) => callPhase(panel.call?.state) !== "none"),
      notify: (text) => this.toast(text),
    });
    this.t = this.locale.t;
    for (const option of $("#presence").options) option.textContent = `${PRESENCE_MARKS[option.value]} ${this.t(`presence.${option.value}`)}`;
    /** conversation id → ConversationPanel */
    this.panels = new Map();
    this.offerCards = new Map();
    this.listen();
    this.bindForms();
    // search and the knowledge base in the side bar (search.js, knowledge.js; docs/knowledge.md)
    this.search = new ConsoleSearch(this, this.t);
    this.knowledge = new KnowledgeEditor(this, this.t);
    document.querySelector(".console-side").append(this.search.element, this.knowledge.element);
    setInterval(() => this.tick(), 500);
    if (this.agent.token) this.start();
    else this.showLogin();
    showDemoLogin();
  }

  /* ---- login / session ------------------------------------------------------------------- */

  showLogin(message) {
    $("#console").hidden = true;
    $("#me").hidden = true;
    $("#login").hidden = false;
    const error = $("#login-error");
    error.textContent = message ?? "";
    error.hidden = !message;
    $("#login-username").focus();
  }

  async start() {
    $("#login").hidden = true;
    $("#console").hidden = false;
    $("#me").hidden = false;
    this.setConnection(this.t("console.connection.connecting"), "connecting");
    try {
      await this.agent.connect();
    } catch (error) {
      this.showLogin(this.errorText(error));
    }
  }

  bindForms() {
    $("#login-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const button = $("#login-submit");
      button.disabled = true;
      try {
        await this.agent.login($("#login-username").value.trim(), $("#login-password").value);
        $("#login-password").value = "";
        await this.start();
      } catch (error) {
        this.showLogin(this.errorText(error));
      } finally {
        button.disabled = false;
      }
    });
    $("#logout").addEventListener("click", async () => {
      try {
        if (this.agent.connected) await this.agent.setPresence("offline");
      } catch {
        /* logging out anyway */
      }
      await this.agent.logout();
    });
    $("#presence").addEventListener("change", async (e) => {
      try {
        await this.agent.setPresence(e.target.value);
      } catch (error) {
        this.toast(this.errorText(error));
        this.renderMe();
      }
    });

    // Transfer dialog
    const transfer = $("#transfer-dialog");
    $("#transfer-cancel").addEventListener("click", () => transfer.close());
    for (const radio of transfer.querySelectorAll("input[name=target]")) radio.addEventListener("change", () => this.syncTransferForm());
    $("#transfer-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.submitTransfer();
    });

    // Close dialog
    const close = $("#close-dialog");
    $("#close-cancel").addEventListener("click", () => close.close());
    $("#close-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.submitClose();
    });
  }

  listen() {
    const a = this.agent;
    a.on("session", () => {
      this.setConnection(this.t("console.connection.online"), "online");
      this.renderMe();
      // after a reconnect: running calls keep (or get back) their connection
      for (const panel of this.panels.values()) panel.refreshCall();
    });
    a.on("agent", (me) => {
      this.renderMe();
      if (me?.presence_reason === "missed") this.toast(this.t("console.presence.missed"));
    });
    a.on("disconnect", () => this.setConnection(this.t("console.connection.reconnecting"), "offline"));
    a.on("connect_error", (error) => this.setConnection(this.errorText(error), "offline"));
    a.on("logout", (reason) => {
      for (const id of [...this.panels.keys()]) this.removePanel(id);
      for (const card of this.offerCards.values()) card.remove();
      this.offerCards.clear();
      this.renderOfferCount();
      this.showLogin(reason === "logged out" ? "" : this.endedText(reason));
    });
    a.on("error", (error) => this.toast(this.errorText(error)));
    a.on("queues", (queues) => this.renderQueues(queues));
    a.on("offer", (offer) => this.addOffer(offer));
    a.on("offer.revoked", ({ conversation_id: id }) => this.removeOffer(id));
    // Any conversation the SDK knows about (accepted, reopened after a reload) gets a panel.
    a.on("conversation", (summary, conversation) => {
      if (!this.panels.has(conversation.id) && this.wantsPanel(conversation)) this.addPanel(conversation);
    });
  }

  /** Open conversations assigned to me get a panel automatically; others only when opened. */
  wantsPanel(conversation) {
    const s = conversation.summary;
    if (!s || s.state === "closed") return false;
    const me = this.agent.agent?.id;
    return agentId(s.agent) === me || (s.transfer?.accepted && agentId(s.transfer?.to?.agent) === me);
  }

  setConnection(text, state) {
    const node = $("#connection");
    node.textContent = text;
    node.dataset.state = state;
  }

  renderMe() {
    const me = this.agent.agent;
    if (!me) return;
    const name = me.name || me.id;
    $("#agent-name").textContent = me.role === "supervisor" ? this.t("console.me.supervisor", { name }) : name;
    if (me.presence) $("#presence").value = me.presence;
    document.body.dataset.presence = me.presence ?? "";
  }

  /** An error in the agent's language (by its code: web/sdk/i18n.js `console.error.*`, `error.*`), else the server's words. */
  errorText(error) {
    return this.t.error(error, "console");
  }

  /** Why the session ended (the SDK's `logout` reason), in the agent's language. */
  endedText(reason) {
    return this.t.locale === "en" ? reason : this.t("login.ended");
  }

  toast(message) {
    const node = h("div", { class: "toast", role: "status" }, message);
    document.body.append(node);
    setTimeout(() => node.remove(), 6000);
  }

  /* ---- queues ------------------------------------------------------------------------------ */

  renderQueues(queues) {
    const body = $("#queues tbody");
    clear(body);
    for (const q of queues) {
      body.append(
        h(
          "tr",
          { dataset: { queue: q.name }, class: q.waiting > 0 ? "queue--waiting" : "" },
          h("td", {}, q.name),
          h("td", { class: "queue-waiting" }, String(q.waiting ?? 0)),
          h("td", {}, q.waiting ? formatDuration(q.longest_wait_s, this.t) : "–"),
          h("td", {}, String(q.agents_available ?? 0)),
        ),
      );
    }
  }

  /* ---- offers ----------------------------------------------------------------------------- */

  addOffer(offer) {
    this.removeOffer(offer.conversationId);
    const t = this.t;
    const s = offer.conversation;
    const lastMessage = [...offer.events].reverse().find((e) => e.type === "message");
    const countdown = h("span", { class: "offer-countdown", role: "timer" });
    // a call from the web says so (voice, or video: the customer's camera goes on when the call is accepted)
    const view = offerView(offer);
    const channel = view.channel;
    const accept = h("button", { type: "button", class: "segue-btn segue-btn--small offer-accept" }, t(view.call ? "console.offer.accept_call" : "console.offer.accept"));
    const decline = h("button", { type: "button", class: "segue-btn segue-btn--ghost segue-btn--small offer-decline" }, t("console.offer.decline"));
    const card = h(
      "li",
      { class: `offer offer--${offer.kind}${view.call ? " offer--call" : ""}`, dataset: { conversationId: offer.conversationId, channel } },
      h(
        "div",
        { class: "offer-head" },
        h("strong", { class: "offer-name" }, customerLabel(s, t)),
        h(
          "span",
          { class: "offer-tags" },
          channel !== "chat" ? h("span", { class: "chan offer-channel", dataset: { channel } }, channelLabel(channel, t)) : null,
          countdown,
        ),
      ),
      view.call ? h("div", { class: "offer-call", dataset: { channel } }, t(`console.offer.call.${channel}`)) : null,
      h(
        "div",
        { class: "offer-meta" },
        [
          offer.kind === "transfer" &&
            t(offer.payload.mode === "warm" || offer.conversation.transfer?.mode === "warm" ? "console.offer.transfer.warm" : "console.offer.transfer", {
              agent: offer.fromAgent?.name ?? offer.fromAgent ?? t("who.an_agent"),
            }),
          t("console.queue", { queue: s.queue ?? "?" }),
          offer.history?.length && t("console.offer.earlier", { count: offer.history.length }),
        ].filter(Boolean).join(" · "),
      ),
      offer.payload.note && h("div", { class: "offer-note" }, t("console.handled.note", { note: offer.payload.note })),
      lastMessage && h("div", { class: "offer-preview" }, lastMessage.data?.text ?? ""),
      h("div", { class: "offer-actions" }, accept, decline),
    );
    card.offer = offer;
    accept.addEventListener("click", async () => {
      accept.disabled = decline.disabled = true;
      try {
        const conversation = await offer.accept();
        // accepting a call from the web answers it as well (no second Accept in the call bar)
        this.addPanel(conversation, { focus: true, answerCall: view.call });
      } catch (error) {
        this.toast(t("console.offer.failed", { message: this.errorText(error) }));
      } finally {
        this.removeOffer(offer.conversationId);
      }
    });
    decline.addEventListener("click", async () => {
      accept.disabled = decline.disabled = true;
      this.removeOffer(offer.conversationId);
      try {
        await offer.decline();
      } catch (error) {
        this.toast(this.errorText(error));
      }
    });
    this.offerCards.set(offer.conversationId, card);
    $("#offers").append(card);
    this.renderOfferCount();
    this.tick();
  }

  removeOffer(id) {
    this.offerCards.get(id)?.remove();
    this.offerCards.delete(id);
    this.renderOfferCount();
  }

  renderOfferCount() {
    $("#offer-count").textContent = String(this.offerCards.size);
    $("#no-offers").hidden = this.offerCards.size > 0;
    document.title = this.offerCards.size ? this.t("console.page_title.offers", { count: this.offerCards.size }) : this.t("console.page_title");
  }

  tick() {
    for (const card of this.offerCards.values()) {
      const left = card.offer.secondsLeft;
      const node = card.querySelector(".offer-countdown");
      node.textContent = left == null ? "" : this.t("console.offer.seconds_left", { seconds: left });
      if (left == null) node.removeAttribute("aria-label");
      else node.setAttribute("aria-label", this.t("console.offer.seconds_left.label", { seconds: left }));
      card.classList.toggle("offer--urgent", left != null && left <= 5);
    }
  }

  /* ---- panels ------------------------------------------------------------------------------ */

  addPanel(conversation, { focus = false, answerCall = false } = {}) {
    let panel = this.panels.get(conversation.id);
    if (!panel) {
      panel = new ConversationPanel(this, conversation);
      this.panels.set(conversation.id, panel);
      $("#panels").append(panel.element);
      this.renderTabs();
    }
    if (answerCall) {
      panel.answerCall = true;
      panel.answerWhenRinging();
    }
    if (focus) {
      panel.element.scrollIntoView({ behavior: "smooth", inline: "nearest", block: "nearest" });
      panel.input.focus();
    }
    return panel;
  }

  removePanel(id) {
    this.panels.get(id)?.destroy();
    this.panels.delete(id);
    const conversation = this.agent.conversations.get(id);
    if (conversation && conversation.isClosed) this.agent.dropConversation(id);
    this.renderTabs();
  }

  /** Open one of the customer's earlier conversations, read-only, in its own column. */
  async openHistory(id) {
    try {
      const conversation = await this.agent.openConversation(id);
      this.addPanel(conversation, { focus: false }).element.scrollIntoView({ behavior: "smooth", inline: "nearest" });
    } catch (error) {
      this.toast(this.t("console.history.open_failed", { message: this.errorText(error) }));
    }
  }

  /** A panel's state or unread count changed. */
  changed(_panel) {
    this.renderTabs();
  }

  renderTabs() {
    const list = $("#conversation-tabs");
    clear(list);
    for (const panel of this.panels.values()) {
      const s = panel.conversation.summary ?? {};
      const view = agentView(panel.conversation, this.agent.agent?.id);
      list.append(
        h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              class: `conv-tab${panel.unread ? " conv-tab--unread" : ""}`,
              dataset: { conversationId: panel.id, state: view.badge.state },
              onclick: () => {
                panel.element.scrollIntoView({ behavior: "smooth", inline: "nearest", block: "nearest" });
                if (!panel.composer.hidden) panel.input.focus();
              },
            },
            h("span", { class: "conv-tab-name" }, customerLabel(s, this.t)),
            h("span", { class: "conv-tab-state" }, this.t(view.badge.key)),
            panel.unread ? h("span", { class: "count count--alert" }, String(panel.unread)) : null,
          ),
        ),
      );
    }
    $("#no-conversations").hidden = this.panels.size > 0;
    $("#panels-empty").hidden = this.panels.size > 0;
    // one conversation takes the whole width (its customer panel beside it); more sit side by side
    $("#panels").dataset.count = String(this.panels.size);
  }

  /* ---- transfer / close dialogs --------------------------------------------------------------- */

  async openTransfer(panel) {
    this.dialogPanel = panel;
    const dialog = $("#transfer-dialog");
    $("#transfer-error").hidden = true;
    $("#transfer-note").value = "";
    // Queues from the latest stats.
    const queueSelect = $("#transfer-queue");
    clear(queueSelect);
    for (const q of this.agent.queues) queueSelect.append(h("option", { value: q.name }, this.t("console.transfer.queue_option", { queue: q.name, count: q.agents_available ?? 0 })));
    // Agents, if the server lists them (REST); otherwise an id field.
    const agentSelect = $("#transfer-agent");
    clear(agentSelect);
    let agents = [];
    try {
      const data = await this.agent.api("GET", "/api/v1/agents");
      agents = (Array.isArray(data) ? data : data.agents ?? []).filter((a) => a.id !== this.agent.agent?.id);
    } catch {
      agents = [];
    }
    for (const a of agents) {
      const presence = a.online === false ? "offline" : a.routing?.presence ?? a.presence ?? "";
      const name = a.name || a.username || a.id;
      const label = presence ? this.t("console.transfer.agent_option", { name, presence: this.t.has(`presence.${presence}`) ? this.t(`presence.${presence}`) : presence }) : name;
      agentSelect.append(h("option", { value: a.id }, label));
    }
    agentSelect.hidden = !agents.length;
    $("#transfer-agent-id").hidden = agents.length > 0;
    this.syncTransferForm();
    dialog.showModal();
  }

  syncTransferForm() {
    const target = $("#transfer-form").elements.target.value;
    $("#transfer-agent-field").hidden = target !== "agent";
    $("#transfer-queue-field").hidden = target !== "queue";
    // Warm transfers consult a named agent.
    const warm = $("#transfer-form").querySelector("input[name=mode][value=warm]");
    warm.disabled = target !== "agent";
    if (warm.disabled && warm.checked) $("#transfer-form").querySelector("input[name=mode][value=cold]").checked = true;
  }

  async submitTransfer() {
    const form = $("#transfer-form");
    const panel = this.dialogPanel;
    const target = form.elements.target.value;
    const mode = form.elements.mode.value;
    let to;
    if (target === "agent") {
      const id = $("#transfer-agent").hidden ? $("#transfer-agent-id").value.trim() : $("#transfer-agent").value;
      if (!id) return this.dialogError("#transfer-error", this.t("console.transfer.choose_agent"));
      to = { agent: id };
    } else {
      const queue = $("#transfer-queue").value;
      if (!queue) return this.dialogError("#transfer-error", this.t("console.transfer.choose_queue"));
      to = { queue };
    }
    const submit = $("#transfer-submit");
    submit.disabled = true;
    try {
      await panel.conversation.transfer(to, { mode, note: $("#transfer-note").value.trim() || undefined });
      $("#transfer-dialog").close();
      if (mode === "warm") panel.setMode("consult");
    } catch (error) {
      this.dialogError("#transfer-error", this.errorText(error));
    } finally {
      submit.disabled = false;
    }
  }

  openClose(panel) {
    this.dialogPanel = panel;
    $("#close-error").hidden = true;
    $("#close-tags").value = "";
    $("#close-dialog").showModal();
  }

  /** The wrap-up tags typed in the close dialog: comma-separated, each once (the server checks them too). */
  closeTags() {
    const tags = [...new Set($("#close-tags").value.split(",").map((tag) => tag.trim()).filter(Boolean))];
    const bad = tags.find((tag) => tag.length > 40 || /[<>]/.test(tag));
    if (bad !== undefined) throw new Error(this.t("console.wrapup.bad_tag"));
    return tags;
  }

  async submitClose() {
    const panel = this.dialogPanel;
    const submit = $("#close-submit");
    let tags;
    try {
      tags = this.closeTags();
    } catch (error) {
      return this.dialogError("#close-error", error.message);
    }
    submit.disabled = true;
    try {
      await panel.conversation.close($("#close-disposition").value, { tags });
      $("#close-dialog").close();
    } catch (error) {
      this.dialogError("#close-error", this.errorText(error));
    } finally {
      submit.disabled = false;
    }
  }

  dialogError(selector, message) {
    const node = $(selector);
    node.textContent = message;
    node.hidden = false;
  }
}

window.segueConsole = new Console();
