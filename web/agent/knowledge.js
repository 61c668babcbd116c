/**
 * The knowledge base in the console: a list of articles, an editor (title, Markdown text,
 * draft / published) and every version (view one, edit from it). Saving sends the version the
 * agent started from, so a change someone else made meanwhile is not overwritten (409).
 *
 * The preview shows the HTML the server made from the Markdown: rendered with raw HTML off and
 * sanitised (nh3 allowlist) before it left the server (docs/knowledge.md "Safe Markdown"); this
 * page inserts nothing else as markup. Everything else is rendered as text.
 */
import { h, clear } from "../sdk/dom.js";

/** Sanitised HTML from the server as a fragment whose links open in a new tab. */
export function articleFragment(html) {
  const template = document.createElement("template");
  template.innerHTML = html; // sanitised by the server (signaling/knowledge.py render_markdown)
  for (const link of template.content.querySelectorAll("a[href]")) {
    link.target = "_blank";
    link.rel = "noopener noreferrer nofollow";
  }
  return template.content;
}

export class KnowledgeEditor {
  /** @param app the console: {agent, toast(message)} */
  constructor(app, t) {
    this.app = app;
    this.t = t;
    this.article = null; // the article being edited (null: a new one)
    this.element = h(
      "section",
      { class: "side-section side-kb" },
      h("h2", {}, t("console.kb")),
      h(
        "div",
        { class: "kb-side-actions" },
        h("button", { id: "kb-open", type: "button", class: "segue-btn segue-btn--ghost segue-btn--small", onclick: () => this.open() }, t("console.kb.open")),
        h("button", { id: "kb-new", type: "button", class: "segue-btn segue-btn--ghost segue-btn--small", onclick: () => this.open(null) }, t("console.kb.new")),
      ),
    );
    this.buildDialog();
  }

  buildDialog() {
    const t = this.t;
    this.filter = h("input", { id: "kb-filter", type: "search", maxlength: 200, placeholder: t("console.kb.search"), "aria-label": t("console.kb.search"), oninput: () => this.loadList() });
    this.list = h("ul", { id: "kb-list", class: "kb-list" });
    this.titleInput = h("input", { id: "kb-title", type: "text", maxlength: 200, required: true });
    this.bodyInput = h("textarea", { id: "kb-body", rows: 14, maxlength: 50000, required: true });
    this.statusInput = h(
      "select",
      { id: "kb-status" },
      h("option", { value: "draft" }, t("console.kb.status.draft")),
      h("option", { value: "published" }, t("console.kb.status.published")),
    );
    this.info = h("p", { id: "kb-info", class: "muted small", role: "status" });
    this.error = h("p", { id: "kb-error", class: "login-error", role: "alert", hidden: true });
    this.preview = h("div", { id: "kb-preview", class: "kb-preview" });
    this.versions = h("ol", { id: "kb-versions", class: "kb-versions" });
    this.dialog = h(
      "dialog",
      { id: "kb-dialog", class: "dialog kb-dialog", "aria-labelledby": "kb-dialog-title" },
      h(
        "div",
        { class: "kb-layout" },
        h("div", { class: "kb-browse" }, h("h2", { id: "kb-dialog-title" }, t("console.kb")), this.filter, this.list,
          h("button", { type: "button", class: "segue-btn segue-btn--ghost segue-btn--small", onclick: () => this.edit(null) }, t("console.kb.new"))),
        h(
          "form",
          { id: "kb-form", class: "kb-edit", onsubmit: (e) => (e.preventDefault(), this.save()) },
          h("label", { class: "dialog-field" }, t("console.kb.title"), this.titleInput),
          h("label", { class: "dialog-field" }, t("console.kb.body"), this.bodyInput),
          h("label", { class: "dialog-field" }, t("console.kb.status"), this.statusInput),
          this.info,
          this.error,
          h(
            "div",
            { class: "dialog-actions" },
            h("button", { type: "button", class: "segue-btn segue-btn--ghost", id: "kb-close", onclick: () => this.dialog.close() }, t("console.kb.close")),
            h("button", { type: "submit", class: "segue-btn", id: "kb-save" }, t("console.kb.save")),
          ),
        ),
        h("div", { class: "kb-side" }, h("h3", {}, t("console.kb.preview")), this.preview, h("h3", {}, t("console.kb.versions")), this.versions),
      ),
    );
    document.body.append(this.dialog);
  }

  /** Open the dialog on the list; `ref` null: a new article; an id or slug: that article. */
  async open(ref) {
    if (!this.dialog.open) this.dialog.showModal();
    // a new article's empty form first: what the agent types while the list loads must stay
    if (ref === null || (!ref && !this.article)) this.edit(null);
    const list = this.loadList();
    if (ref) await this.edit(ref);
    await list;
  }

  async loadList() {
    const q = this.filter.value.trim();
    let items;
    try {
      items = q
        ? (await this.app.agent.api("GET", `/api/v1/kb/search?${new URLSearchParams({ q, limit: "50" })}`)).results
        : (await this.app.agent.api("GET", "/api/v1/kb/articles")).articles;
    } catch (error) {
      return this.showError(error);
    }
    clear(this.list);
    if (!items.length) this.list.append(h("li", { class: "muted small" }, this.t("console.kb.none")));
    for (const a of items) {
      this.list.append(
        h(
          "li",
          {},
          h(
            "button",
            { type: "button", class: "kb-item", dataset: { articleId: a.id, status: a.status ?? "" }, onclick: () => this.edit(a.id) },
            h("strong", {}, a.title),
            " ",
            h("span", { class: "muted small" }, this.t(`console.kb.status.${a.status === "published" ? "published" : "draft"}`)),
          ),
        ),
      );
    }
  }

  /** Fill the editor with an article (null: empty, for a new one). */
  async edit(ref) {
    this.error.hidden = true;
    clear(this.preview);
    clear(this.versions);
    if (!ref) {
      this.article = null;
      this.titleInput.value = "";
      this.bodyInput.value = "";
      this.statusInput.value = "draft";
      this.info.textContent = "";
      this.titleInput.focus();
      return;
    }
    try {
      const { article } = await this.app.agent.api("GET", `/api/v1/kb/articles/${encodeURIComponent(ref)}`);
      this.show(article);
      await this.loadVersions();
    } catch (error) {
      this.showError(error);
    }
  }

  show(article) {
    this.article = article;
    this.titleInput.value = article.title;
    this.bodyInput.value = article.body;
    this.statusInput.value = article.status;
    this.info.textContent = this.t("console.kb.info", { path: `/kb/${article.slug}`, version: article.version });
    clear(this.preview);
    this.preview.append(articleFragment(article.html));
  }

  async loadVersions() {
    if (!this.article) return;
    const t = this.t;
    const { versions } = await this.app.agent.api("GET", `/api/v1/kb/articles/${this.article.id}/versions`);
    clear(this.versions);
    for (const v of [...versions].reverse()) {
      this.versions.append(
        h(
          "li",
          { dataset: { version: String(v.version) } },
          t("console.kb.version", { version: v.version, time: t.time(v.ts), name: v.by?.name || v.by?.id || "" }),
          " ",
          h("button", { type: "button", class: "segue-btn segue-btn--ghost segue-btn--small kb-view-version", onclick: () => this.viewVersion(v.version) }, t("console.kb.view")),
        ),
      );
    }
  }

  /** Show an old version in the preview, with a button to edit from it. */
  async viewVersion(n) {
    try {
      const { version } = await this.app.agent.api("GET", `/api/v1/kb/articles/${this.article.id}/versions/${n}`);
      clear(this.preview);
      this.preview.append(
        h("p", { class: "muted small" }, this.t("console.kb.version", { version: version.version, time: this.t.time(version.ts), name: version.by?.name || "" })),
        h("h3", {}, version.title),
        articleFragment(version.html),
        h(
          "button",
          {
            type: "button",
            class: "segue-btn segue-btn--ghost segue-btn--small kb-restore",
            onclick: () => {
              this.titleInput.value = version.title;
              this.bodyInput.value = version.body;
              this.bodyInput.focus();
            },
          },
          this.t("console.kb.restore"),
        ),
      );
    } catch (error) {
      this.showError(error);
    }
  }

  async save() {
    this.error.hidden = true;
    const body = { title: this.titleInput.value, body: this.bodyInput.value, status: this.statusInput.value };
    try {
      const { article } = this.article
        ? await this.app.agent.api("PATCH", `/api/v1/kb/articles/${this.article.id}`, { ...body, base_version: this.article.version })
        : await this.app.agent.api("POST", "/api/v1/kb/articles", body);
      this.show(article);
      this.info.textContent = `/kb/${article.slug} · ${this.t("console.kb.saved", { version: article.version })}`;
      await Promise.all([this.loadVersions(), this.loadList()]);
    } catch (error) {
      this.showError(error);
    }
  }

  showError(error) {
    this.error.textContent = this.t.error(error, "console");
    this.error.hidden = false;
  }
}
