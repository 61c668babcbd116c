/**
 * The language of the agent console, the wallboard, their sign-in forms, the home page `/` and the help pages `/kb/`.
 *
 * Why this order: agents share computers and move between them, so the choice follows the person.
 * It is kept on their account (`locale`, PATCH /api/v1/agents/{id}: every browser they sign in on
 * gets it) and in this browser (localStorage: per agent, and the last choice for the sign-in form,
 * before anyone is known). Without a choice the browser's languages decide (navigator.languages),
 * else English. Docs: docs/sdk.md "Languages of the console and the wallboard".
 *
 * The static words of a page carry `data-i18n` (text), `data-i18n-placeholder`, `data-i18n-title`
 * and `data-i18n-aria-label` attributes with catalogue keys (web/sdk/i18n.js); the rest is built
 * by the pages with the translator. Changing the language reloads the page (conversations come
 * back by themselves), unless a call is running: then it applies on the next load.
 */
import { translator, resolveLocale, browserLocale, locales } from "../sdk/i18n.js";
import { h } from "../sdk/dom.js";

const DEVICE_KEY = "segue.locale";
const agentKey = (agentId) => `segue.locale:${agentId}`;

function stored(key) {
  try {
    return localStorage.getItem(key) || null;
  } catch {
    return null; // storage off (private mode, policy): the browser's languages decide
  }
}

function store(key, value) {
  try {
    if (value) localStorage.setItem(key, value);
    else localStorage.removeItem(key);
  } catch {
    /* not remembered in this browser; the account still has it */
  }
}

/** The locale a page opens in: this browser's last choice, else the browser's languages, else English. */
export function initialLocale() {
  const saved = stored(DEVICE_KEY);
  return saved ? resolveLocale(saved) : browserLocale();
}

/** Translate the page's static words (the `data-i18n*` attributes under `root`) and its `lang`. */
export function localize(root, t) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const attribute of ["placeholder", "title", "aria-label"]) {
    for (const node of root.querySelectorAll(`[data-i18n-${attribute}]`)) node.setAttribute(attribute, t(node.getAttribute(`data-i18n-${attribute}`)));
  }
  document.documentElement.lang = t.locale;
}

/** The language menu (`#language`): each language named in its own words; `choose(code)` on a pick. */
export function languageMenu(t, choose) {
  const menu = h(
    "select",
    { id: "language", class: "console-language", "aria-label": t("console.language"), title: t("console.language"), onchange: () => choose(menu.value) },
    locales().map((code) => h("option", { value: code, lang: code }, translator(code)("language.name"))),
  );
  menu.value = t.locale;
  return menu;
}

/**
 * The language of a page nobody signs in to (the home page, the help pages): this browser's choice (the one the
 * sign-in forms keep), else the browser's languages, else English. Translates the page, puts the
 * language menu in `bar` (a pick is kept in this browser and reloads the page) and returns `t`.
 */
export function browserPageLocale(bar) {
  const t = translator(initialLocale());
  localize(document, t);
  bar.append(languageMenu(t, (code) => {
    store(DEVICE_KEY, code);
    if (code !== t.locale) location.reload();
  }));
  return t;
}

/**
 * A page's language: its translator `t`, a language menu in the header, and the agent's saved
 * choice once signed in.
 */
export class PageLocale {
  /**
   * @param client  the page's SegueAgent
   * @param options `busy()`: true while a call runs (no reload then); `notify(text)`: a passing message
   */
  constructor(client, { busy = () => false, notify = () => {} } = {}) {
    this.client = client;
    this.busy = busy;
    this.notify = notify;
    this.t = translator(initialLocale());
    localize(document, this.t);
    this.menu = languageMenu(this.t, (code) => this.choose(code));
    document.querySelector(".console-bar")?.append(this.menu);
    client.on("agent", (me) => this.adopt(me));
    client.on("session", () => this.adopt(client.agent));
  }

  /** Signed in (or the account changed): follow the account's language, or give it this browser's choice. */
  adopt(me) {
    if (!me?.id) return;
    const mine = stored(agentKey(me.id));
    if (me.locale) {
      const wanted = resolveLocale(me.locale);
      store(agentKey(me.id), wanted);
      store(DEVICE_KEY, wanted);
      if (wanted !== this.t.locale) this.apply(wanted);
    } else if (mine) {
      // chosen in this browser before the account could keep it: keep it there now
      this.save(me.id, mine);
      if (resolveLocale(mine) !== this.t.locale) this.apply(resolveLocale(mine));
    }
  }

  /** The agent picked a language in the menu. */
  async choose(code) {
    const me = this.client.agent;
    store(DEVICE_KEY, code);
    if (me?.id) {
      store(agentKey(me.id), code);
      await this.save(me.id, code);
    }
    this.apply(code);
  }

  async save(agentId, code) {
    try {
      await this.client.api("PATCH", `/api/v1/agents/${encodeURIComponent(agentId)}`, { locale: code });
    } catch (error) {
      this.notify(this.t("console.language.not_saved", { message: this.t.error(error, "console") }));
    }
  }

  /** Show the page in `code`: reload now, or after the running call (it would drop the call's connection). */
  apply(code) {
    this.menu.value = code;
    if (code === this.t.locale || code === this.pending) return;
    this.pending = code;
    if (this.busy()) {
      this.notify(translator(code)("console.language.later"));
      return;
    }
    location.reload();
  }
}
