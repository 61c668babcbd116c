/**
 * A simple live wallboard: queue tiles (waiting, longest wait against the answer target, agents
 * available, service level), agents (presence, load) and every open conversation. Queue stats
 * are pushed (`queues`); agents and conversations are refreshed every few seconds.
 */
import { SegueAgent } from "../sdk/segue.js";
import { h, clear } from "../sdk/dom.js";
import { channelLabel, formatDuration } from "../sdk/format.js";

const REFRESH_MS = 3000;
const $ = (selector) => document.querySelector(selector);

const client = new SegueAgent({ autoOpen: false });
let timer = null;

function showLogin(message) {
  clearInterval(timer);
  $("#board").hidden = true;
  $("#me").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message ?? "";
  $("#login-error").hidden = !message;
}

async function start() {
  $("#login").hidden = true;
  $("#me").hidden = false;
  try {
    await client.connect();
  } catch (error) {
    showLogin(error.message);
    return;
  }
  $("#board").hidden = false;
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
}

async function refresh() {
  const error = $("#board-error");
  try {
    const [agents, conversations] = await Promise.all([client.api("GET", "/api/v1/agents"), client.listConversations()]);
    renderAgents(agents.agents ?? []);
    renderConversations(conversations);
    client.refreshQueues().catch(() => {});
    error.hidden = true;
  } catch (e) {
    error.textContent = e.message;
    error.hidden = false;
  }
}

function tile(label, value, { warn = false, id } = {}) {
  return h("div", { class: `tile-stat${warn ? " tile-stat--warn" : ""}`, dataset: id ? { stat: id } : {} }, h("div", { class: "tile-value" }, value), h("div", { class: "tile-label" }, label));
}

function renderQueues(queues) {
  const box = $("#queue-tiles");
  clear(box);
  for (const q of queues) {
    const late = q.waiting > 0 && q.longest_wait_s > q.answer_target_s;
    const level = q.answered ? `${Math.round((100 * (q.answered_in_target ?? 0)) / q.answered)} %` : "–";
    box.append(
      h(
        "article",
        { class: `tile${late ? " tile--late" : ""}`, dataset: { queue: q.name } },
        h("h3", {}, q.name, h("span", { class: "muted small" }, ` · target ${formatDuration(q.answer_target_s)}`)),
        h(
          "div",
          { class: "tile-stats" },
          tile("waiting", String(q.waiting ?? 0), { warn: q.waiting > 0, id: "waiting" }),
          tile("longest wait", q.waiting ? formatDuration(q.longest_wait_s) : "–", { warn: late, id: "longest" }),
          tile("agents available", String(q.agents_available ?? 0), { warn: q.waiting > 0 && !q.agents_available, id: "available" }),
          tile("answered in target", level, { id: "level" }),
          tile("avg answer", q.avg_answer_s != null && q.answered ? formatDuration(q.avg_answer_s) : "–", { id: "avg" }),
        ),
      ),
    );
  }
}

function renderAgents(agents) {
  const body = $("#agents tbody");
  clear(body);
  for (const a of agents) {
    const presence = a.online === false ? "offline" : a.routing?.presence ?? a.presence ?? "";
    body.append(
      h(
        "tr",
        { dataset: { agent: a.id } },
        h("td", {}, a.name || a.id, a.role === "supervisor" ? h("span", { class: "muted small" }, " (supervisor)") : null),
        h("td", {}, h("span", { class: "presence", dataset: { presence } }, presence)),
        h("td", {}, a.routing?.load != null ? JSON.stringify(a.routing.load).replace(/[{}"]/g, "").replace(/,/g, ", ") : "–"),
        h("td", {}, String(a.routing?.conversations?.length ?? 0)),
      ),
    );
  }
}

function renderConversations(conversations) {
  const body = $("#conversations tbody");
  clear(body);
  const open = conversations.filter((c) => c.state !== "closed").sort((a, b) => a.created_ts - b.created_ts);
  $("#open-count").textContent = String(open.length);
  for (const c of open) {
    body.append(
      h(
        "tr",
        { dataset: { conversationId: c.id, state: c.state } },
        h("td", {}, c.customer?.name || c.customer?.id || "?"),
        h("td", {}, c.queue ?? ""),
        h("td", {}, h("span", { class: "conv-state", dataset: { state: c.state } }, c.state)),
        h("td", {}, c.agent?.name ?? c.agent?.id ?? "–"),
        h("td", {}, (c.channels ?? []).map(channelLabel).join(", ")),
        h("td", {}, c.created_ts ? formatDuration((Date.now() - c.created_ts) / 1000) : ""),
      ),
    );
  }
}

client.on("session", () => {
  const me = client.agent;
  $("#connection").textContent = "Online";
  $("#connection").dataset.state = "online";
  $("#agent-name").textContent = `${me?.name ?? ""}${me?.role === "supervisor" ? "" : " (agent: your conversations only)"}`;
});
client.on("disconnect", () => {
  $("#connection").textContent = "Reconnecting…";
  $("#connection").dataset.state = "offline";
});
client.on("queues", renderQueues);
client.on("logout", (reason) => showLogin(reason === "logged out" ? "" : reason));

$("#login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    await client.login($("#login-username").value.trim(), $("#login-password").value);
    $("#login-password").value = "";
    await start();
  } catch (error) {
    showLogin(error.message);
  }
});
$("#logout").addEventListener("click", () => client.logout());

if (client.token) start();
else showLogin();
