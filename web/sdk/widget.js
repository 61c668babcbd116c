/**
 * Segue's embeddable chat widget.
 *
 *   <script type="module">
 *     import { mountChatWidget } from "https://segue.example/sdk/widget.js";
 *     mountChatWidget({ url: "https://segue.example", queue: "general" });
 *   </script>
 *
 * A launcher button opens a chat panel: queue position and estimated wait, messages, typing
 * indicator, read receipts, "agent joined / transferred" lines, a call bar (voice, video, screen
 * share), rating after the chat closes, and the whole conversation again after a reload.
 *
 * The widget lives in an open shadow root on its own host element (`<segue-widget>`): its styles
 * (`widget.css`, next to this file) cannot reach the page, and the page's styles cannot reach it.
 * Every word it shows comes from the message catalogue (`i18n.js`; options `locale`, `messages`).
 * All text is rendered as text. Options and methods: docs/sdk.md.
 */
import { SegueCustomer, compareIds } from "./segue.js";
import { h, clear, placeEvent, appendPending, markFailed, markReceipts } from "./dom.js";
import { describeEvent } from "./format.js";
import { SegueCall } from "./call.js";
import { CallBar } from "./call-ui.js";
import { callPhase } from "./view-state.js";
import { translator, browserLocale } from "./i18n.js";

const PANEL_OPEN_KEY = "segue.widget.open";
const STYLESHEET = new URL("./widget.css", import.meta.url).href;
const HOST_TAG = "segue-widget";
const POSITIONS = ["bottom-right", "bottom-left"];
const MODES = ["light", "dark", "auto"];
const CALLBACKS = ["onReady", "onMessage", "onCallState", "onConversationEnd"];

/**
 * Mount the widget and return its ChatWidget. Options (all optional; docs/sdk.md has the table):
 *   url, queue, queues [{name, label}], site + identity, title, container,
 *   locale ("en" | "zh-CN"), messages (catalogue overrides),
 *   theme {accent, position: "bottom-right" | "bottom-left", mode: "light" | "dark" | "auto"},
 *   attributes, trackPages (default true), launcher (default true),
 *   onReady(widget), onMessage(event, conversation), onCallState(state, call),
 *   onConversationEnd(summary, conversation).
 * Bad options throw a TypeError that names the option.
 */
export function mountChatWidget(options = {}) {
  const widget = new ChatWidget(options);
  widget.mount(options.container ?? document.body);
  return widget;
}

/** Refuse options that would silently do nothing (a typo in a position, a callback that is not a function...). */
function checkOptions(options) {
  if (options == null || typeof options !== "object") throw new TypeError("mountChatWidget(options): options must be an object");
  const theme = options.theme ?? {};
  if (typeof theme !== "object") throw new TypeError("theme must be an object {accent?, position?, mode?}");
  if (theme.position != null && !POSITIONS.includes(theme.position)) {
    throw new TypeError(`theme.position must be one of ${POSITIONS.join(", ")} (got ${JSON.stringify(theme.position)})`);
  }
  if (theme.mode != null && !MODES.includes(theme.mode)) {
    throw new TypeError(`theme.mode must be one of ${MODES.join(", ")} (got ${JSON.stringify(theme.mode)})`);
  }
  if (theme.accent != null && (typeof theme.accent !== "string" || (globalThis.CSS?.supports && !CSS.supports("color", theme.accent)))) {
    throw new TypeError(`theme.accent must be a CSS colour such as "#0a7c59" (got ${JSON.stringify(theme.accent)})`);
  }
  for (const name of CALLBACKS) {
    if (options[name] != null && typeof options[name] !== "function") throw new TypeError(`${name} must be a function`);
  }
  if (options.locale != null && typeof options.locale !== "string") throw new TypeError('locale must be a language tag such as "zh-CN"');
  if (options.messages != null && typeof options.messages !== "object") throw new TypeError("messages must be an object of catalogue keys to text");
  if (options.container != null && !(options.container instanceof Element)) throw new TypeError("container must be a DOM element");
  if (options.attributes != null) checkAttributes(options.attributes, "attributes");
}

function checkAttributes(attributes, name) {
  if (typeof attributes !== "object" || Array.isArray(attributes) || attributes === null) {
    throw new TypeError(`${name} must be an object such as {plan: "pro", vip: true}`);
  }
  for (const [key, value] of Object.entries(attributes)) {
    const ok = value === null || ["string", "boolean"].includes(typeof value) || (typeof value === "number" && Number.isFinite(value));
    if (!ok) throw new TypeError(`${name}.${key} must be a string, a finite number, a boolean or null (to delete it)`);
  }
}

/** Run a page's callback; an exception in it is logged, never breaks the widget. */
function safely(fn, ...args) {
  if (typeof fn !== "function") return;
  try {
    fn(...args);
  } catch (error) {
    console.error("Segue widget: a callback threw:", error);
  }
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

/**
 * `widget.call` is both the method `call({video})` (a call from the web) and, as before, the
 * shown conversation's SegueCall: its members (`state`, `pc`, `hangup()`...) read through to the
 * current call (undefined when there is none; `widget.currentCall` is the SegueCall or null).
 */
function callHandle(widget) {
  const start = (options) => widget.startCall(options);
  return new Proxy(start, {
    get(target, prop) {
      const call = widget.currentCall;
      if (call && prop in call) {
        const value = call[prop];
        return typeof value === "function" ? value.bind(call) : value;
      }
      return Reflect.get(target, prop);
    },
    set(target, prop, value) {
      const call = widget.currentCall;
      if (!call) return false;
      call[prop] = value;
      return true;
    },
    has(target, prop) {
      return Boolean(widget.currentCall && prop in widget.currentCall) || Reflect.has(target, prop);
    },
  });
}

/** The mounted widget (see mountChatWidget): the customer's chat and calls on any page, in its own shadow root. */
export class ChatWidget {
  constructor(options = {}) {
    checkOptions(options);
    this.options = { trackPages: true, launcher: true, ...options, theme: { ...(options.theme ?? {}) } };
    this.t = translator(this.options.locale ?? browserLocale(), this.options.messages);
    this.customer = new SegueCustomer({ url: options.url, site: options.site, identity: options.identity });
    this.conversation = null;
    this.unsubscribe = [];
    this.offCustomer = [];
    this.unread = 0;
    this.typingTimer = null;
    /** conversation id → SegueCall (one per open conversation) */
    this.calls = new Map();
    this.activeCall = null;
    this.callBar = null;
    this.callHandle = callHandle(this);
    this.ready = false;
    this.destroyed = false;
    /** conversations seen open by this widget: their close fires onConversationEnd once */
    this.seenOpen = new Set();
    this.status = { key: "widget.status.connecting", params: {}, state: "" };
  }

  /** The call method / the shown conversation's SegueCall (see callHandle). */
  get call() {
    return this.callHandle;
  }

  /** The shown conversation's SegueCall, or null. */
  get currentCall() {
    return this.activeCall;
  }

  /** The host element (the shadow root's host). */
  get element() {
    return this.host;
  }

  /* ---- DOM ---------------------------------------------------------------------------- */

  mount(container) {
    const theme = this.options.theme;
    this.host = document.createElement(HOST_TAG);
    this.host.dataset.position = theme.position ?? "bottom-right";
    this.host.dataset.theme = theme.mode ?? "light";
    if (theme.accent) this.host.style.setProperty("--segue-accent", theme.accent);
    this.shadowRoot = this.host.attachShadow({ mode: "open" });
    // the widget stays invisible until its stylesheet is in (no flash of unstyled buttons)
    const sheet = h("link", { rel: "stylesheet", href: STYLESHEET });
    this.styled = new Promise((resolve) => {
      sheet.addEventListener("load", resolve);
      sheet.addEventListener("error", () => {
        console.error(`Segue widget: could not load its stylesheet ${STYLESHEET}`);
        resolve();
      });
    });
    this.shadowRoot.append(sheet);
    this.isStyled = false;
    this.build();
    this.styled.then(() => {
      this.isStyled = true;
      this.root.style.removeProperty("visibility");
    });
    container.append(this.host);

    this.listen();
    for (const conversation of this.customer.openConversations()) this.seenOpen.add(conversation.id);
    // Remembered conversations are already loaded from the cache: show the newest at once.
    const remembered = this.customer.rememberedConversations();
    if (remembered.length) this.show(remembered[remembered.length - 1]);
    else this.showStart();
    if (sessionStorage.getItem(PANEL_OPEN_KEY) === "1") this.open();
    this.customer.connect();
    this.attachCall();
  }

  /** Build the widget's elements (again after setLocale) into the shadow root. */
  build() {
    const t = this.t;
    const title = this.options.title ?? t("widget.title");
    this.launcher = null;
    if (this.options.launcher !== false) {
      this.badge = h("span", { class: "segue-badge", hidden: true });
      this.launcher = h(
        "button",
        { id: "segue-launcher", class: "segue-launcher", type: "button", "aria-expanded": "false", onclick: () => this.toggle() },
        chatIcon(),
        (this.launcherLabel = h("span", { class: "segue-launcher-label" }, title)),
        // a call shows on the launcher too, so a minimised widget still says "call" (renderCallButton)
        (this.launcherCall = h("span", { class: "segue-launcher-call", role: "status", hidden: true })),
        this.badge,
      );
    }

    this.statusLine = h("div", { id: "segue-status", class: "segue-status" });
    this.callButton = h(
      "button",
      { id: "segue-call", class: "segue-btn segue-btn--ghost", type: "button", title: t("widget.call.title"), onclick: () => this.startCall().catch(() => {}) },
      t("widget.call"),
    );
    this.videoCallButton = h(
      "button",
      {
        id: "segue-video-call",
        class: "segue-btn segue-btn--ghost",
        type: "button",
        title: t("widget.video_call.title"),
        onclick: () => this.startCall({ video: true }).catch(() => {}),
      },
      t("widget.video_call"),
    );
    this.endButton = h(
      "button",
      { id: "segue-end", class: "segue-btn segue-btn--ghost", type: "button", hidden: true, onclick: () => this.endChat() },
      t("widget.end"),
    );
    const minimise = h(
      "button",
      { id: "segue-minimise", class: "segue-icon-btn", type: "button", "aria-label": t("widget.minimise"), title: t("widget.minimise"), onclick: () => this.close() },
      "–",
    );

    // Pre-chat: pick a topic (optional), say what it's about, start.
    this.startText = h("textarea", { id: "segue-start-text", rows: 3, placeholder: t("widget.start.placeholder"), "aria-label": t("widget.start.placeholder"), maxlength: 4000 });
    // Anonymous visitors may say who they are (a verified identity brings its own name).
    this.startName = h("input", {
      id: "segue-start-name",
      type: "text",
      placeholder: t("widget.name.placeholder"),
      "aria-label": t("widget.name.placeholder"),
      maxlength: 128,
      autocomplete: "name",
    });
    this.topic = null;
    const topics = this.options.queues ?? [];
    if (topics.length > 1) {
      this.topic = h(
        "select",
        { id: "segue-topic", "aria-label": t("widget.topic") },
        topics.map((q) => h("option", { value: q.name, selected: q.name === this.options.queue }, q.label ?? q.name)),
      );
    }
    this.startForm = h(
      "form",
      { id: "segue-start", class: "segue-start", onsubmit: (e) => (e.preventDefault(), this.startChat()) },
      h("p", { class: "segue-start-intro" }, t("widget.intro")),
      this.topic && h("label", { class: "segue-field" }, h("span", {}, t("widget.topic")), this.topic),
      this.startName,
      this.startText,
      h("button", { id: "segue-start-btn", class: "segue-btn", type: "submit" }, t("widget.start")),
    );

    this.position = h("div", { id: "segue-position", class: "segue-position", role: "status", hidden: true });
    this.callSlot = h("div", { id: "segue-call-slot", class: "segue-call-slot" });
    this.log = h("ol", { id: "segue-log", class: "segue-log", "aria-live": "polite", "aria-label": t("widget.log.label") });
    this.typing = h("div", { id: "segue-typing", class: "segue-typing", hidden: true });
    this.error = h("div", { id: "segue-error", class: "segue-error", role: "alert", hidden: true });

    this.input = h("textarea", {
      id: "segue-input",
      rows: 1,
      placeholder: t("widget.message.placeholder"),
      maxlength: 4000,
      "aria-label": t("widget.message.label"),
      oninput: () => this.conversation?.noteTyping(),
      onkeydown: (e) => {
        if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
          e.preventDefault();
          this.sendFromComposer();
        }
      },
    });
    this.composer = h(
      "form",
      { id: "segue-composer", class: "segue-composer", hidden: true, onsubmit: (e) => (e.preventDefault(), this.sendFromComposer()) },
      this.input,
      h("button", { id: "segue-send", class: "segue-btn", type: "submit" }, t("widget.send")),
    );

    this.rating = this.buildRating();
    this.help = this.buildHelp();

    this.panel = h(
      "section",
      { id: "segue-panel", class: "segue-panel", hidden: true, "aria-label": title },
      h(
        "header",
        { class: "segue-panel-head" },
        h("div", { class: "segue-panel-heading" }, h("div", { class: "segue-panel-title" }, title), this.statusLine),
        h("div", { class: "segue-panel-actions" }, this.callButton, this.videoCallButton, this.endButton, minimise),
      ),
      this.help,
      this.startForm,
      this.position,
      this.callSlot,
      this.log,
      this.typing,
      this.error,
      this.rating,
      this.composer,
    );

    this.root = h("div", { class: "segue-widget", lang: t.locale }, this.panel, this.launcher);
    if (!this.isStyled) this.root.style.visibility = "hidden"; // until widget.css is in (CSSOM: allowed by a strict CSP)
    this.shadowRoot.append(this.root);
    this.renderStatus();
    this.renderIdentity();
  }

  /* ---- help articles (the knowledge base, docs/knowledge.md) ------------------------------- */

  /** "Search help": a search field, its results and the article view, inside the shadow root. */
  buildHelp() {
    const t = this.t;
    this.helpInput = h("input", {
      id: "segue-help-q",
      type: "search",
      placeholder: t("widget.help.placeholder"),
      "aria-label": t("widget.help.placeholder"),
      maxlength: 200,
      autocomplete: "off",
    });
    this.helpStatus = h("p", { id: "segue-help-status", class: "segue-help-status", role: "status", hidden: true });
    this.helpResults = h("ul", { id: "segue-help-results", class: "segue-help-results" });
    this.helpArticleTitle = h("h3", { class: "segue-help-title" });
    this.helpArticleBody = h("div", { class: "segue-help-body" });
    this.helpArticleView = h(
      "article",
      { id: "segue-help-article", class: "segue-help-article", hidden: true },
      h("button", { id: "segue-help-back", class: "segue-btn segue-btn--ghost segue-btn--small", type: "button", onclick: () => this.showHelpResults() }, t("widget.help.back")),
      this.helpArticleTitle,
      this.helpArticleBody,
      h("p", { class: "segue-help-still" }, t("widget.help.still")),
    );
    return h(
      "details",
      { id: "segue-help", class: "segue-help" },
      h("summary", {}, t("widget.help")),
      h(
        "form",
        { id: "segue-help-form", class: "segue-help-form", role: "search", onsubmit: (e) => (e.preventDefault(), this.searchHelp(this.helpInput.value)) },
        this.helpInput,
        h("button", { id: "segue-help-go", class: "segue-btn segue-btn--small", type: "submit" }, t("widget.help.go")),
      ),
      this.helpStatus,
      this.helpResults,
      this.helpArticleView,
    );
  }

  setHelpStatus(text) {
    this.helpStatus.textContent = text ?? "";
    this.helpStatus.hidden = !text;
  }

  /** Search the published articles (SegueCustomer.searchHelp) and list them. */
  async searchHelp(q) {
    const t = this.t;
    const words = String(q ?? "").trim();
    if (!words) return;
    this.help.open = true;
    this.showHelpResults();
    clear(this.helpResults);
    this.setHelpStatus(t("widget.help.searching"));
    let articles;
    try {
      await this.customer.connect();
      articles = await this.customer.searchHelp(words);
    } catch (error) {
      this.setHelpStatus(t("widget.help.failed", { message: this.errorText(error) }));
      return;
    }
    this.setHelpStatus(articles.length ? "" : t("widget.help.none", { q: words }));
    for (const article of articles) {
      this.helpResults.append(
        h(
          "li",
          {},
          h(
            "button",
            { type: "button", class: "segue-help-hit", dataset: { slug: article.slug }, onclick: () => this.openHelpArticle(article.slug) },
            h("strong", {}, article.title),
            article.snippet?.text ? h("span", { class: "segue-help-snippet" }, article.snippet.text) : null,
          ),
        ),
      );
    }
  }

  showHelpResults() {
    this.helpArticleView.hidden = true;
    this.helpResults.hidden = false;
  }

  /**
   * Show an article inside the widget. Its HTML comes sanitised from the server (nh3 allowlist);
   * links are made absolute against the Segue server, links to other articles open here, the
   * rest in a new tab.
   */
  async openHelpArticle(slug) {
    const t = this.t;
    let article;
    try {
      await this.customer.connect();
      article = await this.customer.helpArticle(slug);
    } catch (error) {
      this.help.open = true;
      this.setHelpStatus(t("widget.help.failed", { message: this.errorText(error) }));
      return;
    }
    if (this.panel.hidden) this.open();
    this.help.open = true;
    this.setHelpStatus("");
    this.helpArticleTitle.textContent = article.title;
    const template = document.createElement("template");
    template.innerHTML = article.html; // sanitised by the server (docs/knowledge.md "Safe Markdown")
    const base = this.customer.url || location.origin;
    for (const link of template.content.querySelectorAll("a[href]")) {
      const target = new URL(link.getAttribute("href"), base + "/");
      const other = this.helpSlug(target.href);
      if (other) {
        link.addEventListener("click", (e) => (e.preventDefault(), this.openHelpArticle(other)));
      } else {
        link.target = "_blank";
        link.rel = "noopener noreferrer nofollow";
      }
      link.href = target.href;
    }
    for (const img of template.content.querySelectorAll("img[src]")) img.src = new URL(img.getAttribute("src"), base + "/").href;
    clear(this.helpArticleBody);
    this.helpArticleBody.append(template.content);
    this.helpArticleView.dataset.slug = article.slug;
    this.helpResults.hidden = true;
    this.helpArticleView.hidden = false;
  }

  /** The article slug of a URL of this Segue server's /kb/<slug> pages, else null. */
  helpSlug(url) {
    try {
      const u = new URL(url);
      const server = new URL((this.customer.url || location.origin) + "/");
      const m = /^\/kb\/([a-z0-9][a-z0-9-]{0,79}|kb_[0-9a-f]{12})$/.exec(u.pathname);
      return u.origin === server.origin && m ? m[1] : null;
    } catch {
      return null;
    }
  }

  /** Links to this server's help articles in a message get an "Open article" button. */
  helpLinks(text) {
    const slugs = [...new Set((String(text ?? "").match(/https?:\/\/[^\s<>"]+/g) ?? []).map((u) => this.helpSlug(u.replace(/[.,;:!?)]+$/, ""))).filter(Boolean))];
    if (!slugs.length) return null;
    return h(
      "div",
      { class: "segue-msg-links" },
      slugs.map((slug) =>
        h("button", { type: "button", class: "segue-btn segue-btn--ghost segue-btn--small segue-help-link", dataset: { slug }, onclick: () => this.openHelpArticle(slug) }, this.t("widget.help.open")),
      ),
    );
  }

  buildRating() {
    const t = this.t;
    this.ratingScore = 0;
    this.stars = [1, 2, 3, 4, 5].map((score) =>
      h(
        "button",
        {
          type: "button",
          class: "segue-star",
          dataset: { score: String(score) },
          "aria-label": t("widget.rating.star", { score }),
          title: t("widget.rating.star", { score }),
          onclick: () => this.pickScore(score),
        },
        "★",
      ),
    );
    this.ratingComment = h("input", {
      id: "segue-rating-comment",
      type: "text",
      placeholder: t("widget.rating.comment"),
      "aria-label": t("widget.rating.comment"),
      maxlength: 1000,
    });
    this.ratingSubmit = h("button", { id: "segue-rate", class: "segue-btn", type: "submit", disabled: true }, t("widget.rating.send"));
    this.ratingForm = h(
      "form",
      { class: "segue-rating-form", onsubmit: (e) => (e.preventDefault(), this.submitRating()) },
      h("p", {}, t("widget.rating.question")),
      h("div", { class: "segue-stars", role: "group", "aria-label": t("widget.rating.label") }, this.stars),
      this.ratingComment,
      this.ratingSubmit,
    );
    this.ratingThanks = h("p", { id: "segue-rating-thanks", class: "segue-rating-thanks", hidden: true }, t("widget.rating.thanks"));
    const again = h("button", { id: "segue-new-chat", class: "segue-btn segue-btn--ghost", type: "button", onclick: () => this.newChat() }, t("widget.new_chat"));
    return h("div", { id: "segue-rating", class: "segue-rating", hidden: true }, this.ratingForm, this.ratingThanks, again);
  }

  /**
   * Switch the language (a shipped locale, or one added with i18n.addLocale): the widget is
   * built again in the new language; the conversation, a running call and a draft stay.
   */
  setLocale(locale, messages = this.options.messages) {
    if (typeof locale !== "string") throw new TypeError('setLocale(locale): locale must be a language tag such as "zh-CN"');
    this.t = translator(locale, messages);
    this.options.locale = locale;
    this.options.messages = messages;
    if (!this.host) return;
    const wasOpen = !this.panel.hidden;
    const drafts = [this.input.value, this.startText.value, this.startName.value];
    this.detachCallBar();
    this.root.remove();
    this.build();
    [this.input.value, this.startText.value, this.startName.value] = drafts;
    if (this.conversation) this.show(this.conversation);
    else this.showStart();
    if (wasOpen) this.open();
    this.renderBadge();
  }

  /* ---- panel ----------------------------------------------------------------------------- */

  toggle() {
    if (this.panel.hidden) this.open();
    else this.close();
  }

  open() {
    this.panel.hidden = false;
    this.root.classList.add("segue-widget--open");
    this.launcher?.setAttribute("aria-expanded", "true");
    if (this.launcherLabel) this.launcherLabel.textContent = this.t("widget.hide");
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
    this.launcher?.setAttribute("aria-expanded", "false");
    if (this.launcherLabel) this.launcherLabel.textContent = this.options.title ?? this.t("widget.title");
    sessionStorage.setItem(PANEL_OPEN_KEY, "0");
  }

  get isOpen() {
    return Boolean(this.panel && !this.panel.hidden);
  }

  renderBadge() {
    if (!this.badge || !this.launcher) return;
    this.badge.hidden = this.unread === 0;
    this.badge.textContent = String(this.unread);
    this.badge.setAttribute("aria-label", this.t("widget.unread", { count: this.unread }));
  }

  /** A SegueError, a media error or anything else, in the visitor's language where we have words for it. */
  errorText(error) {
    const t = this.t;
    if (["NotAllowedError", "NotFoundError", "NotReadableError", "OverconstrainedError"].includes(error?.name)) {
      return t("error.media", { message: error.message });
    }
    if (error?.code && t.has(`error.${error.code}`)) return t.error(error);
    const message = error?.message ?? String(error);
    return t.locale === "en" ? message : t("error.other", { message });
  }

  showError(error) {
    this.error.textContent = this.errorText(error);
    this.error.hidden = false;
    clearTimeout(this.errorTimer);
    this.errorTimer = setTimeout(() => (this.error.hidden = true), 8000);
  }

  /* ---- SDK wiring ------------------------------------------------------------------------ */

  listen() {
    const c = this.customer;
    this.offCustomer = [
      c.on("session", () => {
        this.setStatus("widget.status.online", "online");
        // after a reload or a reconnect: a running call gets (or keeps) its connection
        this.attachCall()?.refresh().catch((error) => this.showError(error));
        if (!this.ready) this.onFirstSession();
      }),
      c.on("disconnect", () => this.setStatus("widget.status.reconnecting", "offline")),
      c.on("connect_error", (error) =>
        error.code === "unavailable"
          ? this.setStatus("widget.status.unreachable", "offline")
          : error.code === "rate_limited" // the SDK connects again after the wait the server named
            ? this.setStatus("widget.status.busy", "offline")
            : this.setStatus("widget.status.refused", "offline", { message: error.message }),
      ),
      c.on("error", (error) => this.showError(error)),
      c.on("message", (event, conversation, { replay } = {}) => {
        if (!replay) safely(this.options.onMessage, event, conversation);
        if (!replay && conversation?.id) this.follow(conversation.id);
      }),
      c.on("conversation", (summary, conversation) => this.noteConversationState(summary, conversation)),
    ];
    this.onVisibility = () => this.markRead();
    document.addEventListener("visibilitychange", this.onVisibility);
  }

  /** Once connected: attributes from the options, the page view, then onReady. */
  onFirstSession() {
    this.ready = true;
    // setAttributes() calls wait for this one, so a page's later values are never overtaken
    this.initialAttributes = Promise.resolve();
    if (this.options.attributes && Object.keys(this.options.attributes).length) {
      this.initialAttributes = this.customer
        .setAttributes(this.options.attributes)
        .then(() => {}, (error) => console.error("Segue widget: the attributes option was refused:", error));
    }
    if (this.options.trackPages !== false) {
      this.customer.pageView().catch((error) => console.warn("Segue widget: page view not recorded:", error));
    }
    safely(this.options.onReady, this);
  }

  /** onConversationEnd fires once, for a conversation this widget saw open, when it closes. */
  noteConversationState(summary, conversation) {
    if (!summary?.id) return;
    if (summary.state !== "closed") {
      this.seenOpen.add(summary.id);
      this.follow(summary.id);
    } else if (this.seenOpen.delete(summary.id)) safely(this.options.onConversationEnd, summary, conversation);
  }

  /** An idle widget (the start form, or a closed conversation) follows a conversation that starts
   * elsewhere: one a server started for this visitor (REST outreach, docs/rest.md), or one from
   * another tab. The conversation is remembered, so a reload shows it too. */
  follow(id) {
    const idle = () => !this.conversation || this.conversation.isClosed;
    if (!idle() || this.following === id) return;
    this.following = id;
    this.customer.openConversation(id).then(
      (conversation) => { if (idle() && !conversation.isClosed) this.show(conversation); },
      (error) => this.showError(error),
    ).finally(() => { this.following = null; });
  }

  setStatus(key, state, params = {}) {
    this.status = { key, params, state };
    this.renderStatus();
  }

  renderStatus() {
    if (!this.statusLine) return;
    this.statusLine.textContent = this.t(this.status.key, this.status.params);
    this.statusLine.dataset.state = this.status.state;
  }

  /** A verified identity brings its own name: the name field is for anonymous visitors only. */
  renderIdentity() {
    if (this.options.identity) this.startName.remove();
    else if (!this.startName.isConnected) this.startText.before(this.startName);
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
    if (this.destroyed || !conversation || conversation.isClosed || !this.customer.socket) {
      this.detachCallBar();
      return null;
    }
    let call = this.calls.get(conversation.id);
    if (!call) {
      call = new SegueCall(this.customer, conversation.id);
      this.calls.set(conversation.id, call);
    }
    if (this.activeCall !== call || !this.callBar) {
      this.detachCallBar();
      this.activeCall = call;
      this.lastCallState = call.state?.state ?? "none";
      this.callBar = new CallBar(call, { kind: "customer", t: this.t, onError: (error) => this.showError(error) });
      this.callBar.element.id = "segue-callbar";
      this.offCall = [
        call.on("state", () => this.onCallStateChange(call)),
        call.on("ended", () => this.onCallStateChange(call)),
      ];
      this.callSlot.append(this.callBar.element);
    }
    this.renderCallButton();
    return call;
  }

  onCallStateChange(call) {
    this.renderCallButton();
    const state = call.state?.state ?? "none";
    if (state === this.lastCallState) return;
    this.lastCallState = state;
    safely(this.options.onCallState, state, call);
  }

  detachCallBar() {
    for (const off of this.offCall ?? []) off();
    this.offCall = [];
    this.callBar?.destroy();
    this.callBar = null;
    this.activeCall = null;
    this.renderCallButton();
  }

  renderCallButton() {
    if (!this.callButton) return;
    const state = this.activeCall?.state?.state ?? "none";
    const hidden = state !== "none" || Boolean(this.conversation?.isClosed);
    this.callButton.hidden = hidden;
    this.videoCallButton.hidden = hidden;
    // a minimised widget still shows that a call is on
    this.root?.classList.toggle("segue-widget--in-call", state === "active");
    if (this.launcherCall) {
      const phase = callPhase(this.activeCall?.state);
      const theirs = this.activeCall?.state?.requested_by?.kind === "agent";
      const key = phase === "active" ? "widget.launcher.call.active" : phase === "ringing" ? (theirs ? "widget.launcher.call.incoming" : "widget.launcher.call.ringing") : null;
      this.launcherCall.hidden = !key;
      this.launcherCall.textContent = key ? this.t(key) : "";
      if (this.launcher) this.launcher.dataset.call = phase;
    }
  }

  /**
   * A call from the web (the "Call us" / "Video call" buttons; `widget.call({video})`): a call in
   * the open conversation, or a new conversation (channel "voice" / "video") straight into one.
   * With `video`, the camera goes on with the call (or now, if a call is already running).
   * Resolves once the call is asked for; rejects (and shows the error) if it cannot be.
   */
  async startCall({ video = false } = {}) {
    if (typeof video !== "boolean") throw new TypeError("call({video}): video must be true or false");
    const buttons = [this.callButton, this.videoCallButton];
    for (const b of buttons) b.disabled = true;
    try {
      if (this.panel.hidden) this.open();
      if (!this.conversation || this.conversation.isClosed) {
        this.customer.connect();
        const conversation = await this.customer.startConversation({
          queue: this.topic?.value || this.options.queue,
          channel: video ? "video" : "voice",
          context: { page_url: location.href },
          name: (!this.options.identity && this.startName.value.trim()) || undefined,
        });
        this.show(conversation);
      }
      const call = this.attachCall();
      if (!call) throw new Error("the widget is not connected");
      if (call.state.state === "none") await call.request("voice", { pageUrl: location.href, video });
      else if (video && call.state.state === "active" && call.pc && !call.localVideo().camera) await this.callBar.toggleVideo();
    } catch (error) {
      this.showError(error);
      throw error;
    } finally {
      for (const b of buttons) b.disabled = false;
      this.renderCallButton();
    }
  }

  /* ---- identity and attributes ------------------------------------------------------------ */

  /**
   * The visitor signed in on your site: reconnect as the verified customer (`identity` signed by
   * your server, see docs/sdk.md). The anonymous conversations join the identity's. Resolves with
   * the session; rejects with a SegueError (`bad_identity`: the previous identity stays).
   */
  async setUser({ site = null, identity = null } = {}) {
    // the calls listen on the old socket: drop them (a running call resumes on the new one)
    this.detachCallBar();
    for (const call of this.calls.values()) call.close();
    this.calls.clear();
    try {
      const session = await this.customer.setIdentity({ site, identity });
      this.options.site = site;
      this.options.identity = identity;
      return session;
    } finally {
      this.renderIdentity();
      this.attachCall();
    }
  }

  /**
   * Custom attributes of this customer (`{plan: "pro", vip: true}`; null deletes a key): agents
   * see them beside the conversation. Resolves with `{attributes}` (all of them after the change).
   */
  async setAttributes(attributes) {
    checkAttributes(attributes, "setAttributes(attributes)");
    await this.customer.connect();
    await this.initialAttributes;
    return this.customer.setAttributes(attributes);
  }

  /**
   * Remove the widget: the host element goes, the connection closes, every listener and timer
   * is removed. A running call is not ended (a widget mounted again picks it up, as after a
   * reload). Mounting again afterwards works.
   */
  destroy() {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const off of this.unsubscribe) off();
    for (const off of this.offCustomer) off();
    this.unsubscribe = [];
    this.offCustomer = [];
    document.removeEventListener("visibilitychange", this.onVisibility);
    clearTimeout(this.typingTimer);
    clearTimeout(this.errorTimer);
    this.detachCallBar();
    for (const call of this.calls.values()) call.close();
    this.calls.clear();
    this.customer.disconnect();
    this.host?.remove();
  }

  /* ---- chat ------------------------------------------------------------------------------- */

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
    if (!this.conversation || this.destroyed || this.panel.hidden || document.visibilityState === "hidden") return;
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
    const t = this.t;
    const { kind, text, known } = describeEvent(event, { viewer: "customer", t });
    if (kind === "note" || kind === "consult") return null; // never sent to customers anyway
    // "waiting for an agent" is the banner above the log (renderPosition), not also a log line;
    // event types without words (internal ones) are not shown to customers
    if (event.type === "conversation.queued" || known === false) return null;
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
      !mine && h("div", { class: "segue-msg-author" }, event.author?.name || t("widget.agent")),
      h("div", { class: "segue-msg-text" }, text),
      !mine && this.helpLinks(text),
      h(
        "div",
        { class: "segue-msg-meta" },
        h("time", { datetime: new Date(event.ts ?? Date.now()).toISOString() }, t.time(event.ts)),
        mine && h("span", { class: "segue-receipt" }, t("receipt.sent")),
      ),
    );
  }

  renderPending(clientId, text) {
    appendPending(this.log, clientId, text, this.t);
  }

  renderFailed(clientId, error) {
    markFailed(
      this.log,
      clientId,
      { message: this.errorText(error) },
      (text) => this.conversation?.send(text, { clientId }).catch((e) => this.showError(e)),
      this.t,
    );
  }

  renderReceipts() {
    markReceipts(this.log, ".segue-msg--mine[data-event-id]", this.conversation?.readUpTo("agent"), compareIds, this.t);
  }

  renderTyping({ author, typing }) {
    if (author?.kind === "customer") return;
    clearTimeout(this.typingTimer);
    if (!typing) return this.hideTyping();
    this.typing.textContent = this.t("widget.typing", { name: author?.name || this.t("widget.agent") });
    this.typing.hidden = false;
    // If the "stopped" never comes (connection lost), don't show it forever.
    this.typingTimer = setTimeout(() => this.hideTyping(), 8000);
  }

  hideTyping() {
    this.typing.hidden = true;
  }

  renderPosition(position) {
    if (!this.waiting()) {
      this.position.hidden = true;
      return;
    }
    const t = this.t;
    const wait = position?.estimated_wait_s;
    if (position?.position != null) {
      this.position.textContent =
        wait != null ? t("widget.position.wait", { position: position.position, wait: t.duration(wait) }) : t("widget.position", { position: position.position });
    } else {
      this.position.textContent = t("widget.waiting");
    }
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
    if (closed && this.activeCall?.conversationId === conversation.id) {
      this.activeCall.close();
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
