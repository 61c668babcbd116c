/**
 * The customer's earlier conversations in the console's customer panel: every channel, when, who
 * handled it, the wrap-up (disposition, tags), CSAT, the calls with their length and recording,
 * and — on demand — the whole transcript with internal notes.
 *
 * Why on demand: a returning customer may have dozens of conversations; their summaries come with
 * the conversation (`history`), their events only when the agent opens one (REST
 * `GET /api/v1/conversations/{id}/events`, the agent's token). Recordings need the agent's bearer
 * token too, so they are fetched as a blob and played from an object URL (an `<audio src>` on the
 * recording URL itself would go without the header and be refused).
 *
 * Every text through the translator `t` (web/sdk/i18n.js); all content rendered as text.
 */
import { h, clear } from "../sdk/dom.js";
import { describeEvent, channelLabel, dispositionLabel, personName } from "../sdk/format.js";
import { agentName, channelsUsed } from "../sdk/view-state.js";

export class CustomerHistory {
  /**
   * @param app   the console ({agent, openHistory(id)})
   * @param panel the ConversationPanel it belongs to
   * @param t     translator
   */
  constructor(app, panel, t) {
    this.app = app;
    this.panel = panel;
    this.t = t;
    /** conversation id → {element, head, meta, body, summary, state: "closed" | "loading" | "open"} */
    this.items = new Map();
    this.urls = [];
    this.count = h("span", { class: "count" }, "0");
    this.list = h("ul", { class: "conv-history-list" });
    this.none = h("p", { class: "muted small conv-history-none", hidden: true }, t("console.history.none"));
    this.element = h("details", { class: "conv-history" }, h("summary", {}, t("console.history"), " ", this.count), this.none, this.list);
  }

  destroy() {
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls = [];
  }

  /** Show these summaries (newest first); items already shown keep their expanded transcript. */
  render(summaries) {
    this.count.textContent = String(summaries.length);
    this.none.hidden = summaries.length > 0;
    const keep = new Set(summaries.map((s) => s.id));
    for (const [id, item] of this.items) {
      if (!keep.has(id)) {
        item.element.remove();
        this.items.delete(id);
      }
    }
    for (const [index, summary] of summaries.entries()) {
      let item = this.items.get(summary.id);
      if (!item) {
        item = this.build(summary);
        this.items.set(summary.id, item);
      }
      item.summary = summary;
      this.renderHead(item);
      if (this.list.children[index] !== item.element) this.list.insertBefore(item.element, this.list.children[index] ?? null);
    }
  }

  build(summary) {
    const t = this.t;
    const item = { summary, state: "closed" };
    item.toggle = h("button", {
      type: "button",
      class: "history-toggle",
      "aria-expanded": "false",
      dataset: { conversationId: summary.id },
      onclick: () => this.toggle(item),
    });
    item.open = h(
      "button",
      { type: "button", class: "segue-link history-open", dataset: { conversationId: summary.id }, title: t("console.history.open"), onclick: () => this.app.openHistory(summary.id) },
      t("console.history.open"),
    );
    item.meta = h("div", { class: "history-meta" });
    item.calls = h("ul", { class: "history-calls" });
    item.transcript = h("ol", { class: "segue-log history-transcript", "aria-label": t("widget.log.label") });
    item.status = h("p", { class: "muted small history-status", hidden: true });
    item.body = h("div", { class: "history-body", hidden: true }, item.calls, item.status, item.transcript);
    item.element = h(
      "li",
      { class: "conv-history-item", dataset: { conversationId: summary.id } },
      h("div", { class: "history-head" }, item.toggle, item.open),
      item.meta,
      item.body,
    );
    return item;
  }

  /** The always-visible part: when, queue, channels with time on each, agent, wrap-up, CSAT. */
  renderHead(item) {
    const t = this.t;
    const s = item.summary;
    const channels = t.list(channelsUsed(s)
      .map(([c, seconds]) => (seconds == null ? channelLabel(c, t) : t("console.channel_time", { channel: channelLabel(c, t), duration: t.duration(seconds) }))));
    item.toggle.textContent = [t.time(s.created_ts), s.queue, channels].filter(Boolean).join(" · ");
    clear(item.meta);
    const parts = [];
    if (s.agent) parts.push(h("span", { class: "history-agent" }, t("console.history.agent", { agent: agentName(s.agent) })));
    if (s.disposition) parts.push(h("span", { class: "history-disposition" }, t("console.history.disposition", { disposition: dispositionLabel(s.disposition, t) })));
    if (s.tags?.length) parts.push(h("span", { class: "history-tags" }, t("console.history.tags", { tags: t.list(s.tags) })));
    if (s.csat) {
      parts.push(
        h(
          "span",
          { class: "history-csat", dataset: { score: String(s.csat.score) } },
          t(s.csat.comment ? "console.history.csat_comment" : "console.history.csat", { score: s.csat.score, comment: s.csat.comment }),
        ),
      );
    }
    item.meta.append(...parts);
    item.meta.hidden = !parts.length;
    this.renderCalls(item);
  }

  /** The conversation's calls: media, length, and a button that loads the recording into a player. */
  renderCalls(item) {
    const t = this.t;
    const calls = item.summary.calls ?? [];
    // a player already loaded stays (re-rendering must not stop the agent listening)
    if (item.callsShown === JSON.stringify(calls)) return;
    item.callsShown = JSON.stringify(calls);
    clear(item.calls);
    for (const call of calls) {
      const media = channelLabel(call.media === "video" ? "video" : "voice", t);
      const label = call.duration_s == null ? t("console.call.ongoing", { media }) : t("console.call.item", { media, duration: t.duration(call.duration_s) });
      const li = h("li", { class: "history-call", dataset: { media: call.media ?? "voice" } }, h("span", { class: "history-call-label" }, label));
      if (call.recording?.url) {
        const play = h("button", { type: "button", class: "segue-btn segue-btn--ghost segue-btn--small call-play" }, t("console.call.play"));
        play.addEventListener("click", () => this.play(call, li, play));
        li.append(" ", play);
      }
      item.calls.append(li);
    }
    item.calls.hidden = !calls.length;
  }

  async toggle(item) {
    const opening = item.body.hidden;
    item.body.hidden = !opening;
    item.toggle.setAttribute("aria-expanded", String(opening));
    if (opening && item.state === "closed") await this.load(item);
  }

  /** Fetch the transcript (messages, system lines, internal notes) once. */
  async load(item) {
    const t = this.t;
    item.state = "loading";
    item.status.textContent = t("console.history.loading");
    item.status.hidden = false;
    try {
      const { events } = await this.app.agent.api("GET", `/api/v1/conversations/${encodeURIComponent(item.summary.id)}/events`);
      clear(item.transcript);
      const customerName = item.summary.customer?.name;
      for (const event of events ?? []) {
        const { kind, text, known } = describeEvent(event, { viewer: "agent", customerName, t });
        if (known === false) continue;
        const author = event.author ?? {};
        if (kind === "message") {
          const theirs = author.kind === "customer";
          item.transcript.append(
            h(
              "li",
              { class: `segue-msg ${theirs ? "segue-msg--theirs" : "segue-msg--colleague"}`, dataset: { eventId: event.id, type: event.type } },
              h("div", { class: "segue-msg-author" }, personName(author.name, t) || author.id || ""),
              h("div", { class: "segue-msg-text" }, text),
              h("div", { class: "segue-msg-meta" }, t.time(event.ts)),
            ),
          );
        } else if (kind === "note" || kind === "consult") {
          item.transcript.append(
            h(
              "li",
              { class: `ev-internal ev-${kind}`, dataset: { eventId: event.id, type: event.type } },
              h("div", { class: "ev-internal-head" }, t(kind === "note" ? "console.history.notes" : "console.history.consult"), " · ", author.name || author.id || "", " · ", t.time(event.ts)),
              h("div", { class: "ev-internal-text" }, text),
            ),
          );
        } else {
          item.transcript.append(h("li", { class: "segue-system", dataset: { eventId: event.id, type: event.type } }, text, " · ", t.time(event.ts)));
        }
      }
      if (!item.transcript.children.length) item.transcript.append(h("li", { class: "muted small" }, t("console.history.empty")));
      item.status.hidden = true;
      item.state = "open";
    } catch (error) {
      item.status.textContent = t("console.history.failed", { message: t.error(error, "console") });
      item.state = "closed";
    }
  }

  /** Fetch a recording with the agent's token and play it in the page. */
  async play(call, li, button) {
    const t = this.t;
    button.disabled = true;
    const status = h("span", { class: "muted small history-call-status" }, t("console.call.loading"));
    li.append(" ", status);
    try {
      const agent = this.app.agent;
      const response = await fetch(agent.url + call.recording.url, { headers: { Authorization: `Bearer ${agent.token}` } });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw Object.assign(new Error(body.error?.message ?? `HTTP ${response.status}`), { code: body.error?.code });
      }
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      this.urls.push(url);
      const audio = h("audio", {
        class: "history-recording",
        controls: true,
        preload: "metadata",
        src: url,
        "aria-label": t("console.call.recording", { when: t.time(call.started_ts) }),
      });
      status.remove();
      button.replaceWith(audio);
    } catch (error) {
      // 503: the recording is on a node that is down (docs/deployment.md "Recordings with several nodes")
      const why = error.code === "unavailable" ? t("console.call.unreachable") : t.error(error, "console");
      status.textContent = t("console.call.failed", { message: why });
      button.disabled = false;
    }
  }
}
