/**
 * Segue's one-tag embed: a classic script (not a module) for sites that paste a snippet.
 *
 *   <script src="https://segue.example.com/sdk/0.1.0/embed.js" integrity="sha384-..."
 *           crossorigin="anonymous" async data-segue-auto data-queue="general"></script>
 *
 * It defines `window.Segue`:
 *   Segue.init(options) -> Promise<ChatWidget>   options as mountChatWidget's (web/sdk/widget.js);
 *                                                `url` defaults to the origin this script came from
 *   Segue.open() / close() / toggle() / destroy() / setUser({site, identity}) /
 *   setAttributes(attrs) / call({video})         -> Promise; called before the widget is there,
 *                                                they wait for it (in call order)
 *   Segue.widget                                 the ChatWidget once mounted, else null
 *   Segue("init", {...}), Segue("open")          the same, as a function (see the stub below)
 *
 * The widget's modules are loaded with a dynamic import() relative to this script's own URL, so
 * they come from the same (versioned) folder. With `data-segue-auto` the widget is mounted at
 * once from the tag's data attributes (data-queue, data-title, data-locale, data-url,
 * data-accent, data-position, data-mode, data-launcher="false"); without it, call Segue.init().
 *
 * A page may call Segue before this async script has run by defining a queueing stub first:
 *   window.Segue = window.Segue || function () { (Segue.q = Segue.q || []).push(arguments); };
 *   Segue("init", { queue: "general" });
 * The queued calls run, in order, once this script has loaded.
 */
(() => {
  "use strict";

  const script = document.currentScript;
  const existing = window.Segue;
  if (existing && existing.__segueEmbed) return; // the tag is on the page twice: the first one serves
  if (!script || !script.src) {
    console.error("Segue: load embed.js with <script src=\"https://<your Segue node>/sdk/<version>/embed.js\">");
    return;
  }
  const base = new URL(".", script.src); // the SDK folder this script came from

  /** A promise with its resolve / reject outside (settled when the widget is mounted). */
  function deferred() {
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => ((resolve = res), (reject = rej)));
    promise.catch(() => {}); // a failed mount is reported by init(); queued calls reject with it
    return { promise, resolve, reject };
  }

  let ready = deferred();
  let mounting = null;

  /** The call-style entry point: Segue("open"), Segue("init", options). */
  function Segue(method, ...args) {
    if (typeof method !== "string" || method.startsWith("_") || typeof Segue[method] !== "function") {
      return Promise.reject(new TypeError(`Segue: unknown method ${JSON.stringify(method)} (one of init, destroy, ${METHODS.join(", ")})`));
    }
    return Segue[method](...args);
  }

  const METHODS = ["open", "close", "toggle", "setUser", "setAttributes", "call"];

  /** Mount the widget (once; a second call returns the same promise until destroy()). */
  Segue.init = (options = {}) => {
    if (mounting) return mounting;
    const settings = { ...options };
    if (settings.url == null) settings.url = base.origin;
    const target = ready;
    mounting = import(new URL("widget.js", base).href).then(({ mountChatWidget }) => {
      const widget = mountChatWidget(settings);
      if (target === ready) Segue.widget = widget;
      target.resolve(widget);
      return widget;
    });
    mounting.catch((error) => {
      console.error("Segue: the chat widget could not be loaded", error);
      if (target === ready) {
        mounting = null; // init() may be tried again
        ready = deferred();
      }
      target.reject(error);
    });
    return mounting;
  };

  // Each widget method: now when mounted, else once it is.
  for (const method of METHODS) {
    Segue[method] = (...args) => ready.promise.then((widget) => widget[method](...args));
  }

  /** Unmount the widget; a later init() mounts a new one. */
  Segue.destroy = () => {
    const current = mounting;
    if (!current) return Promise.resolve();
    mounting = null;
    Segue.widget = null;
    ready = deferred();
    return current.then((widget) => widget.destroy());
  };

  Segue.widget = null;
  Object.defineProperty(Segue, "__segueEmbed", { value: true });
  window.Segue = Segue;

  /** Zero-JavaScript set-up: <script ... data-segue-auto data-queue="general">. */
  function optionsFromTag(data) {
    const options = {};
    for (const key of ["url", "queue", "title", "locale"]) if (data[key]) options[key] = data[key];
    const theme = {};
    for (const key of ["accent", "position", "mode"]) if (data[key]) theme[key] = data[key];
    if (Object.keys(theme).length) options.theme = theme;
    if (data.launcher === "false") options.launcher = false;
    if (data.trackPages === "false") options.trackPages = false;
    return options;
  }

  const queued = existing && Array.isArray(existing.q) ? existing.q : [];
  if ("segueAuto" in script.dataset && !queued.some((args) => args[0] === "init")) {
    Segue.init(optionsFromTag(script.dataset));
  }
  for (const args of queued) {
    Segue(...args).catch((error) => {
      if (args[0] !== "init") console.error(`Segue: ${args[0]}() failed`, error); // init() logs its own
    });
  }
})();
