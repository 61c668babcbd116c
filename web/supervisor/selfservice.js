/**
 * The wallboard's self-service tile: how many customers who opened a help article found their
 * answer without an agent today (GET /api/v1/kb/self-service, docs/knowledge.md "Self-service").
 * All text from the catalogue, rendered as text.
 */
import { h, clear } from "../sdk/dom.js";

let section = null;

function build(t) {
  section = h(
    "section",
    { id: "self-service", class: "self-service" },
    h("h2", { class: "board-title" }, t("console.selfservice")),
    h("div", { id: "self-service-tiles", class: "tiles" }),
  );
  const queues = document.querySelector("#queue-tiles")?.closest("section");
  if (queues) queues.after(section);
  else document.querySelector("#board")?.prepend(section);
}

function stat(label, value, id) {
  return h("div", { class: "tile-stat", dataset: { stat: id } }, h("div", { class: "tile-value" }, value), h("div", { class: "tile-label" }, label));
}

/** Fetch and show today's self-service figures (called with each wallboard refresh). */
export async function refreshSelfService(client, t) {
  if (!section) build(t);
  const { self_service: s } = await client.api("GET", "/api/v1/kb/self-service?days=1");
  const decided = s.helped + s.escalated;
  const rate = s.rate == null ? "–" : t.percent(s.rate);
  const box = section.querySelector("#self-service-tiles");
  clear(box);
  box.append(
    h(
      "article",
      { class: "tile", dataset: { rate: s.rate == null ? "" : String(s.rate) } },
      h("h3", {}, decided ? t("console.selfservice.rate", { rate, helped: s.helped, decided }) : t("console.selfservice.none")),
      h(
        "div",
        { class: "tile-stats" },
        stat(t("board.selfservice.rate"), rate, "rate"),
        stat(t("board.selfservice.helped"), String(s.helped), "helped"),
        stat(t("board.selfservice.escalated"), String(s.escalated), "escalated"),
        stat(t("board.selfservice.pending"), String(Math.max(0, s.pending)), "pending"),
      ),
    ),
  );
}
