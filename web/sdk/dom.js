/**
 * Tiny DOM helpers for Segue's pages. Text is always set as text (textContent / text nodes),
 * never parsed as HTML: a message "<img src=x onerror=...>" shows literally. The helpers that
 * show words take an optional translator from i18n.js (default English).
 */
import { english } from "./i18n.js";

/**
 * h("div", {class: "x", dataset: {id: "1"}, onclick: fn}, "text", child, [more children])
 * Strings become text nodes; null/undefined/false children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value == null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

/** Append children (strings as text nodes, arrays flattened). */
export function append(node, children) {
  for (const child of [children].flat(Infinity)) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Remove every child. */
export function clear(node) {
  while (node.firstChild) node.firstChild.remove();
  return node;
}

/** Scroll a log to the bottom if the reader was already near it (or `force`). */
export function stickToBottom(node, force = false) {
  const near = node.scrollHeight - node.scrollTop - node.clientHeight < 80;
  if (force || near) node.scrollTop = node.scrollHeight;
}

/**
 * Put an event's element into a chat log at its place by event id (events can arrive out of
 * order after a resume), replacing the pending copy of our own message. Does nothing if the
 * event is already shown or `makeElement` returns null. `compare` orders two event ids.
 */
export function placeEvent(log, event, makeElement, compare) {
  if (log.querySelector(`[data-event-id="${CSS.escape(event.id)}"]`)) return;
  const item = makeElement(event);
  if (!item) return;
  const clientId = event.data?.client_id;
  if (clientId) log.querySelector(`[data-client-id="${CSS.escape(clientId)}"]:not([data-event-id])`)?.remove();
  let before = null;
  for (const node of log.querySelectorAll("[data-event-id]")) {
    if (compare(node.dataset.eventId, event.id) > 0) {
      before = node;
      break;
    }
  }
  if (!before) before = log.querySelector(".segue-msg--pending, .segue-msg--failed");
  log.insertBefore(item, before);
}

/** Show our own message at once, marked "Sending…", until its stored event replaces it (placeEvent). */
export function appendPending(log, clientId, text, t = english) {
  if (log.querySelector(`[data-client-id="${CSS.escape(clientId)}"]`)) return;
  log.append(
    h(
      "li",
      { class: "segue-msg segue-msg--mine segue-msg--pending", dataset: { clientId } },
      h("div", { class: "segue-msg-text" }, text),
      h("div", { class: "segue-msg-meta" }, h("span", { class: "segue-receipt" }, t("receipt.sending"))),
    ),
  );
  log.scrollTop = log.scrollHeight;
}

/**
 * Mark a pending message as not sent, with a Retry button that calls `retry(text)`. Retrying
 * reuses the same client_id, so if the first attempt was stored after all the server keeps one copy.
 */
export function markFailed(log, clientId, error, retry, t = english) {
  const item = log.querySelector(`[data-client-id="${CSS.escape(clientId)}"]:not([data-event-id])`);
  if (!item) return;
  item.classList.replace("segue-msg--pending", "segue-msg--failed");
  const text = item.querySelector(".segue-msg-text").textContent;
  clear(item.querySelector(".segue-msg-meta")).append(
    h("span", { class: "segue-receipt" }, `${t("receipt.not_sent", { error: error?.message ?? "?" })} `),
    h("button", { type: "button", class: "segue-link", onclick: () => { item.remove(); retry(text); } }, t("receipt.retry")),
  );
}

/**
 * Show "Sent" / "Read" on my messages in `log` (those matching `selector`): read up to the event
 * id `upTo` (null: nothing read yet). `compareIds` orders event ids (from segue.js, passed in so
 * this module stays free of the client).
 */
export function markReceipts(log, selector, upTo, compareIds, t = english) {
  for (const node of log.querySelectorAll(selector)) {
    const receipt = node.querySelector(".segue-receipt");
    if (!receipt) continue;
    const read = upTo != null && compareIds(node.dataset.eventId, upTo) <= 0;
    receipt.textContent = read ? t("receipt.read") : t("receipt.sent");
    node.classList.toggle("segue-msg--read", read);
  }
}
