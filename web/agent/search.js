/**
 * The console's search box: conversations by words, customer and date (GET /api/v1/search,
 * docs/knowledge.md "Search"). Only conversations the agent may read come back; a result opens
 * its conversation in a column. Matched words are marked with <mark>, built from the character
 * ranges the server sends: all text is rendered as text.
 */
import { h, clear } from "../sdk/dom.js";
import { customerLabel } from "./panel.js";

/** `text` with the [start, end) ranges wrapped in <mark> (text nodes only). */
export function highlighted(snippet) {
  const text = snippet?.text ?? "";
  const out = [];
  let at = 0;
  for (const [start, end] of snippet?.highlights ?? []) {
    if (start < at || end > text.length) continue;
    if (start > at) out.push(text.slice(at, start));
    out.push(h("mark", {}, text.slice(start, end)));
    at = end;
  }
  if (at < text.length) out.push(text.slice(at));
  return out;
}

export class ConsoleSearch {
  /** @param app the console: {agent, panels, openHistory(id), toast(message)} */
  constructor(app, t) {
    this.app = app;
    this.t = t;
    this.q = h("input", { id: "search-q", type: "search", maxlength: 200, placeholder: t("console.search.placeholder"), "aria-label": t("console.search.placeholder") });
    this.customer = h("select", { id: "search-customer", "aria-label": t("console.search.customer"), onfocus: () => this.fillCustomers() });
    this.from = h("input", { id: "search-from", type: "date", "aria-label": t("console.search.from") });
    this.to = h("input", { id: "search-to", type: "date", "aria-label": t("console.search.to") });
    this.status = h("p", { id: "search-status", class: "muted small", role: "status", hidden: true });
    this.results = h("ul", { id: "search-results", class: "search-results" });
    this.fillCustomers();
    this.element = h(
      "section",
      { class: "side-section side-search" },
      h("h2", {}, t("console.search")),
      h(
        "form",
        { id: "search-form", class: "search-form", role: "search", onsubmit: (e) => (e.preventDefault(), this.run()) },
        h("div", { class: "search-row" }, this.q, h("button", { id: "search-go", type: "submit", class: "segue-btn segue-btn--small" }, t("console.search.go"))),
        h("label", { class: "search-field" }, h("span", {}, t("console.search.customer")), this.customer),
        h(
          "div",
          { class: "search-row" },
          h("label", { class: "search-field" }, h("span", {}, t("console.search.from")), this.from),
          h("label", { class: "search-field" }, h("span", {}, t("console.search.to")), this.to),
        ),
      ),
      this.status,
      this.results,
    );
  }

  /** Customers of the open columns, to narrow a search to one of them. */
  fillCustomers() {
    const chosen = this.customer.value;
    clear(this.customer);
    this.customer.append(h("option", { value: "" }, this.t("console.search.any_customer")));
    const seen = new Set();
    for (const panel of this.app.panels.values()) {
      const s = panel.conversation.summary;
      const id = s?.customer?.id;
      if (!id || seen.has(id)) continue;
      seen.add(id);
      this.customer.append(h("option", { value: id }, customerLabel(s, this.t)));
    }
    if (chosen && seen.has(chosen)) this.customer.value = chosen;
  }

  /** Search for one customer's history (a panel's "search this customer"). */
  searchCustomer(customerId, words = "") {
    this.fillCustomers();
    if (![...this.customer.options].some((o) => o.value === customerId)) this.customer.append(h("option", { value: customerId }, customerId));
    this.customer.value = customerId;
    this.q.value = words;
    this.element.scrollIntoView({ block: "nearest" });
    return this.run();
  }

  async run() {
    const t = this.t;
    clear(this.results);
    let answer;
    try {
      answer = await this.app.agent.search({ q: this.q.value.trim(), customer: this.customer.value, from: this.from.value, to: this.to.value });
    } catch (error) {
      this.setStatus(t.error(error, "console"));
      return;
    }
    this.setStatus(answer.results.length ? (answer.more ? t("console.search.more") : "") : t("console.search.none"));
    for (const result of answer.results) {
      const s = result.conversation;
      this.results.append(
        h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              class: "search-hit",
              dataset: { conversationId: s.id, eventId: result.event.id, type: result.event.type },
              onclick: () => this.app.openHistory(s.id),
            },
            h("span", { class: "search-hit-head" }, h("strong", {}, customerLabel(s, t)), " · ", t.time(result.event.ts), " · ", result.event.author?.name ?? ""),
            h("span", { class: "search-hit-text" }, highlighted(result.snippet)),
          ),
        ),
      );
    }
    return answer;
  }

  setStatus(text) {
    this.status.textContent = text ?? "";
    this.status.hidden = !text;
  }
}
