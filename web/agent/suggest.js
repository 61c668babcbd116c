/**
 * Suggestions above a conversation's composer: published help articles and canned replies that
 * match what the customer has written so far (BM25 over their latest messages, GET
 * /api/v1/conversations/<id>/suggestions, docs/knowledge.md). One click puts a reply, or a link
 * to the article (/kb/<slug> on this server: the customer's widget opens it in place), into the
 * composer; the agent sends it as usual. Rendered as text.
 */
import { h, clear } from "../sdk/dom.js";

const DEBOUNCE_MS = 300;

export class Suggestions {
  /** @param panel the ConversationPanel (its conversation, input, canWrite, setMode, useCanned) */
  constructor(app, panel, t) {
    this.app = app;
    this.panel = panel;
    this.t = t;
    this.timer = null;
    this.asked = 0;
    this.list = h("ul", { class: "suggest-list" });
    this.element = h("section", { class: "conv-suggest", hidden: true, "aria-label": t("console.suggest") }, h("h4", { class: "conv-customer-head" }, t("console.suggest")), this.list);
    this.off = panel.conversation.on("event", (event) => {
      if (event.type === "message" && event.author?.kind === "customer") this.refresh();
    });
    this.refresh();
  }

  destroy() {
    clearTimeout(this.timer);
    this.off?.();
  }

  refresh() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.load(), DEBOUNCE_MS);
  }

  async load() {
    if (!this.panel.canWrite || !this.app.agent.token) {
      this.element.hidden = true;
      return;
    }
    const asked = ++this.asked;
    let answer;
    try {
      answer = await this.app.agent.suggestions(this.panel.id);
    } catch {
      return; // suggestions are a help, not a must: the composer works without them
    }
    if (asked !== this.asked) return; // a newer request is under way
    this.render(answer);
  }

  render({ articles = [], replies = [] }) {
    const t = this.t;
    clear(this.list);
    for (const article of articles) {
      this.list.append(
        h(
          "li",
          { class: "suggest-item", dataset: { kind: "article", articleId: article.id, slug: article.slug } },
          h("span", { class: "suggest-kind" }, t("console.suggest.article")),
          h("strong", { class: "suggest-title" }, article.title),
          h("button", { type: "button", class: "segue-btn segue-btn--ghost segue-btn--small suggest-insert", onclick: () => this.insertLink(article) }, t("console.suggest.insert_link")),
        ),
      );
    }
    for (const reply of replies) {
      this.list.append(
        h(
          "li",
          { class: "suggest-item", dataset: { kind: "canned", cannedId: reply.id } },
          h("span", { class: "suggest-kind" }, t("console.suggest.reply")),
          h("strong", { class: "suggest-title" }, reply.title),
          h(
            "button",
            { type: "button", class: "segue-btn segue-btn--ghost segue-btn--small suggest-insert", onclick: () => this.panel.useCanned({ id: reply.id, text: reply.snippet?.text ?? "" }) },
            t("console.suggest.insert"),
          ),
        ),
      );
    }
    this.element.hidden = !(articles.length || replies.length);
  }

  /** "<title>: https://<this server>/kb/<slug>" at the caret, in reply mode. */
  insertLink(article) {
    const url = new URL(article.url ?? `/kb/${article.slug}`, location.origin).href;
    this.insert(`${article.title}: ${url}`);
  }

  insert(text) {
    const panel = this.panel;
    if (panel.mode !== "reply") panel.setMode("reply");
    const input = panel.input;
    const { value, selectionStart, selectionEnd } = input;
    const before = value.slice(0, selectionStart);
    const glue = before && !/\s$/.test(before) ? " " : "";
    input.value = before + glue + text + value.slice(selectionEnd);
    input.focus();
    const caret = before.length + glue.length + text.length;
    input.setSelectionRange(caret, caret);
  }
}
