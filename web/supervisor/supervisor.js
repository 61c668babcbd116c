/**
 * A simple live wallboard: queue tiles (waiting, longest wait against the answer target, agents
 * available, service level), agents (presence, load) and every open conversation. Queue stats
 * are pushed (`queues`); agents and conversations are refreshed every few seconds.
 *
 * Supervisors also monitor live calls from here: each conversation with a call running gets
 * Listen / Whisper / Barge / Stop (SegueAgent#monitorCall, docs/sdk.md). The page connects
 * watch-only: it is never offered conversations and never changes the supervisor's presence.
 */
import { SegueAgent } from "../sdk/segue.js";
import { h, clear, append } from "../sdk/dom.js";
import { channelLabel, formatDuration, personName } from "../sdk/format.js";
import { clock } from "../sdk/call-ui.js";
import { agentName as agentLabel, channelsNow, loadEntries } from "../sdk/view-state.js";
import { showDemoLogin } from "../agent/demo-login.js";
import { PageLocale } from "../agent/locale.js";
import { refreshSelfService } from "./selfservice.js";

const REFRESH_MS = 3000;
const $ = (selector) => document.querySelector(selector);

const client = new SegueAgent({ autoOpen: false, watch: true });
let timer = null;

/** The wallboard's language (the supervisor's choice, else the browser's: ../agent/locale.js). */
const pageLocale = new PageLocale(client, { busy: () => Boolean(monitoring), notify: (text) => showBoardError(text) });
/** Words of the wallboard (web/sdk/i18n.js). */
const t = pageLocale.t;

const MODES = ["listen", "whisper", "barge"].map((mode) => ({ mode, label: t(`board.mode.${mode}`) }));

/** conversation id → the latest call.state (from `call.state` answers and pushes) */
const callStates = new Map();
/** conversations whose call state we asked for on this socket (asking also subscribes to pushes) */
const asked = new Set();
/** conversation id → the latest summary shown */
const summaries = new Map();
/** The call being monitored: {conversationId, monitor} or null (one call at a time). */
let monitoring = null;
let listeningSocket = null;

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
    showLogin(t.error(error, "console"));
    return;
  }
  $("#board").hidden = false;
  followCalls();
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
    refreshSelfService(client, t).catch(() => {}); // the knowledge base's self-service rate (docs/knowledge.md)
    error.hidden = true;
  } catch (e) {
    showBoardError(t.error(e, "console"));
  }
}

function showBoardError(text) {
  const error = $("#board-error");
  error.textContent = text;
  error.hidden = false;
}

function tile(label, value, { warn = false, id } = {}) {
  return h("div", { class: `tile-stat${warn ? " tile-stat--warn" : ""}`, dataset: id ? { stat: id } : {} }, h("div", { class: "tile-value" }, value), h("div", { class: "tile-label" }, label));
}

function renderQueues(queues) {
  const box = $("#queue-tiles");
  clear(box);
  for (const q of queues) {
    const late = q.waiting > 0 && q.longest_wait_s > q.answer_target_s;
    const level = q.answered ? t.percent((q.answered_in_target ?? 0) / q.answered) : "–";
    box.append(
      h(
        "article",
        { class: `tile${late ? " tile--late" : ""}`, dataset: { queue: q.name } },
        h("h3", {}, q.name, h("span", { class: "muted small" }, ` · ${t("board.queue.target", { duration: formatDuration(q.answer_target_s, t) })}`)),
        h(
          "div",
          { class: "tile-stats" },
          tile(t("board.stat.waiting"), String(q.waiting ?? 0), { warn: q.waiting > 0, id: "waiting" }),
          tile(t("board.stat.longest"), q.waiting ? formatDuration(q.longest_wait_s, t) : "–", { warn: late, id: "longest" }),
          tile(t("board.stat.available"), String(q.agents_available ?? 0), { warn: q.waiting > 0 && !q.agents_available, id: "available" }),
          tile(t("board.stat.level"), level, { id: "level" }),
          tile(t("board.stat.avg"), q.avg_answer_s != null && q.answered ? formatDuration(q.avg_answer_s, t) : "–", { id: "avg" }),
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
        h("td", {}, a.name || a.id, a.role === "supervisor" ? h("span", { class: "muted small agent-role" }, t("board.supervisor")) : null),
        h("td", {}, h("span", { class: "presence", dataset: { presence } }, t.has(`presence.${presence}`) ? t(`presence.${presence}`) : presence)),
        h("td", { class: "agent-load" }, loadText(a.routing?.load)),
        h("td", {}, String(a.routing?.conversations?.length ?? 0)),
      ),
    );
  }
}

/** An agent's load, channel by channel ("Chat 1 · Voice 1"), from routing (escalated calls count on voice). */
function loadText(load) {
  const entries = loadEntries(load);
  if (!entries.length) return t("console.load.none");
  return entries.map(([channel, n]) => `${channelLabel(channel, t)} ${n}`).join(" · ");
}

function customerName(summary) {
  return personName(summary?.customer?.name, t) || summary?.customer?.id || t("board.the_customer");
}

function agentName(summary) {
  return agentLabel(summary?.agent) || null;
}

/**
 * Rows are updated in place (keyed by conversation id), so the call buttons a supervisor is
 * about to press are not replaced under the pointer every refresh.
 */
function renderConversations(conversations) {
  const body = $("#conversations tbody");
  const open = conversations.filter((c) => c.state !== "closed").sort((a, b) => a.created_ts - b.created_ts);
  $("#open-count").textContent = String(open.length);
  const keep = new Set(open.map((c) => c.id));
  for (const row of [...body.children]) if (!keep.has(row.dataset.conversationId)) row.remove();
  for (const id of [...summaries.keys()]) if (!keep.has(id)) summaries.delete(id);
  for (const [index, c] of open.entries()) {
    summaries.set(c.id, c);
    let row = body.querySelector(`tr[data-conversation-id="${CSS.escape(c.id)}"]`);
    if (!row) {
      row = h("tr", { dataset: { conversationId: c.id } }, ...Array.from({ length: 7 }, () => h("td")));
      row.cells[6].append(callCell(c.id));
    }
    if (body.children[index] !== row) body.insertBefore(row, body.children[index] ?? null);
    row.dataset.state = c.state;
    const cells = row.cells;
    cells[0].textContent = customerName(c);
    cells[1].textContent = c.queue ?? "";
    clear(cells[2]).append(h("span", { class: "conv-state", dataset: { state: c.state } }, t.has(`state.${c.state}`) ? t(`state.${c.state}`) : c.state));
    cells[3].textContent = agentName(c) ?? "–";
    cells[4].textContent = t.list(channelsNow(c).map((channel) => channelLabel(channel, t)));
    row.dataset.channels = channelsNow(c).join(",");
    cells[5].textContent = c.created_ts ? formatDuration((Date.now() - c.created_ts) / 1000, t) : "";
    // a conversation someone works on may carry a call: ask once (this also subscribes to its pushes)
    if (c.agent && !asked.has(c.id)) askCallState(c.id);
    renderCallCell(c.id);
  }
  if (monitoring && !keep.has(monitoring.conversationId)) stopMonitoring();
}

/* ---- calls: state and monitoring ---------------------------------------------------------- */

/** Follow `call.state` pushes on this socket (a new socket after logging in again). */
function followCalls() {
  const socket = client.socket;
  if (!socket || socket === listeningSocket) return;
  listeningSocket = socket;
  socket.on("call.state", (state) => setCallState(state));
  socket.on("call.ended", ({ conversation_id: id }) => id && setCallState({ conversation_id: id, state: "none" }));
}

async function askCallState(id) {
  asked.add(id);
  try {
    const { call } = await client.request("call.state", { conversation_id: id });
    setCallState(call);
  } catch (error) {
    // gone, or not ours to see: the row shows no call controls (a later refresh asks again,
    // unless we may not look at all)
    if (error.code !== "forbidden") asked.delete(id);
    callStates.set(id, { conversation_id: id, state: "unknown", error: error.message });
    renderCallCell(id);
  }
}

function setCallState(state) {
  if (!state?.conversation_id) return;
  callStates.set(state.conversation_id, state);
  renderCallCell(state.conversation_id);
  if (monitoring?.conversationId === state.conversation_id) renderMonitor();
}

function callCell(id) {
  const buttons = MODES.map(({ mode, label }) =>
    h(
      "button",
      { type: "button", class: `segue-btn segue-btn--ghost segue-btn--small monitor-mode monitor-${mode}`, dataset: { mode }, onclick: () => monitor(id, mode) },
      label,
    ),
  );
  const stop = h("button", { type: "button", class: "segue-btn segue-btn--danger segue-btn--small monitor-stop", onclick: () => stopMonitoring() }, t("board.mode.stop"));
  return h(
    "div",
    { class: "call-cell" },
    h("span", { class: "call-cell-state" }),
    h("div", { class: "call-cell-actions" }, buttons, stop),
  );
}

function renderCallCell(id) {
  const row = $("#conversations tbody").querySelector(`tr[data-conversation-id="${CSS.escape(id)}"]`);
  if (!row) return;
  const state = callStates.get(id);
  const mine = monitoring?.conversationId === id ? monitoring.monitor.mode : null;
  // only supervisors monitor (others see the call's state, not the buttons)
  const live = state?.state === "active" && client.agent?.role === "supervisor";
  const cell = row.querySelector(".call-cell");
  const label = cell.querySelector(".call-cell-state");
  label.dataset.state = state?.state ?? "none";
  if (state?.state === "active") label.textContent = t(state.call?.held ? "board.call.active_held" : "board.call.active", { time: clock(Date.now() - (state.call?.started_ts ?? Date.now())) });
  else if (state?.state === "requested") label.textContent = t("board.call.ringing");
  else label.textContent = "–";
  for (const button of cell.querySelectorAll(".monitor-mode")) {
    button.hidden = !live && !mine;
    button.setAttribute("aria-pressed", String(button.dataset.mode === mine));
  }
  cell.querySelector(".monitor-stop").hidden = !mine;
  if (mine) row.dataset.monitorMode = mine;
  else delete row.dataset.monitorMode;
}

/** Listen / whisper / barge on a call: one call at a time, so another one is stopped first. */
async function monitor(id, mode) {
  const error = $("#monitor-error");
  error.hidden = true;
  try {
    if (monitoring && monitoring.conversationId !== id) await stopMonitoring();
    const m = await client.monitorCall(id, mode);
    if (monitoring?.monitor !== m) {
      monitoring = { conversationId: id, monitor: m, off: [] };
      $("#monitor-customer-audio").srcObject = m.customerStream;
      $("#monitor-agent-audio").srcObject = m.agentStream;
      monitoring.off = [
        m.on("customerstream", (s) => ($("#monitor-customer-audio").srcObject = s)),
        m.on("agentstream", (s) => ($("#monitor-agent-audio").srcObject = s)),
        m.on("connection", () => renderMonitor()),
        m.on("state", (s) => setCallState(s)),
        m.on("mode", (now) => {
          if (now) return renderMonitor();
          // our leg is gone (the call ended): drop the panel and the monitor
          forgetMonitor(m);
          client.stopMonitoring(id).catch(() => {});
        }),
        m.on("error", (e) => showMonitorError(e)),
      ];
    }
  } catch (e) {
    showMonitorError(e);
  }
  renderMonitor();
  renderCallCell(id);
}

async function stopMonitoring() {
  const current = monitoring;
  if (!current) return;
  forgetMonitor(current.monitor);
  try {
    await client.stopMonitoring(current.conversationId);
  } catch (e) {
    showMonitorError(e);
  }
}

/** The monitor stopped (by us, or the call ended): drop the panel (the page's side only). */
function forgetMonitor(m) {
  if (!monitoring || monitoring.monitor !== m) return;
  const id = monitoring.conversationId;
  for (const off of monitoring.off) off();
  monitoring = null;
  $("#monitor-customer-audio").srcObject = null;
  $("#monitor-agent-audio").srcObject = null;
  renderMonitor();
  renderCallCell(id);
}

function showMonitorError(e) {
  const error = $("#monitor-error");
  error.textContent = t.error(e, "console");
  error.hidden = false;
  $("#monitor").hidden = false;
}

function monitorText(mode, summary) {
  const customer = customerName(summary);
  const agent = agentName(summary) ?? t("board.the_agent");
  return t(`board.monitor.${mode === "whisper" || mode === "barge" ? mode : "listen"}`, { customer, agent });
}

function renderMonitor() {
  const box = $("#monitor");
  const modes = $("#monitor-modes");
  if (!monitoring) {
    box.hidden = $("#monitor-error").hidden;
    delete box.dataset.mode;
    for (const button of modes.querySelectorAll(".monitor-mode")) button.setAttribute("aria-pressed", "false");
    $("#monitor-status").textContent = "";
    $("#monitor-connection").textContent = "";
    modes.hidden = true;
    return;
  }
  const { monitor: m, conversationId: id } = monitoring;
  box.hidden = false;
  modes.hidden = false;
  box.dataset.conversationId = id;
  if (m.mode) box.dataset.mode = m.mode;
  $("#monitor-status").textContent = m.mode ? monitorText(m.mode, summaries.get(id)) : t("board.monitor.starting");
  const pc = m.pc?.connectionState;
  const pcText = pc && t.has(`board.pc.${pc}`) ? t(`board.pc.${pc}`) : pc;
  $("#monitor-connection").textContent = pc === "connected" ? t("board.monitor.connected") : pc ? t("board.monitor.connection", { state: pcText }) : "";
  for (const button of modes.querySelectorAll(".monitor-mode")) button.setAttribute("aria-pressed", String(m.mode === button.dataset.mode));
}

/** The monitor panel's buttons, built once (re-rendering must not swap them under the pointer). */
function buildMonitorButtons() {
  const onCurrent = (fn) => () => monitoring && fn(monitoring.conversationId);
  append($("#monitor-modes"), [
    MODES.map(({ mode, label }) =>
      h(
        "button",
        { type: "button", class: `segue-btn segue-btn--ghost segue-btn--small monitor-mode monitor-${mode}`, dataset: { mode }, "aria-pressed": "false", onclick: onCurrent((id) => monitor(id, mode)) },
        label,
      ),
    ),
    h("button", { type: "button", class: "segue-btn segue-btn--danger segue-btn--small monitor-stop", onclick: () => stopMonitoring() }, t("board.mode.stop")),
  ]);
}

client.on("session", () => {
  // a new socket (or a reconnect): call rooms are per socket, ask again
  asked.clear();
  followCalls();
  const me = client.agent;
  $("#connection").textContent = t("console.connection.online");
  $("#connection").dataset.state = "online";
  $("#agent-name").textContent = me?.role === "supervisor" ? me?.name ?? "" : t("board.me.agent", { name: me?.name ?? "" });
});
client.on("disconnect", () => {
  $("#connection").textContent = t("console.connection.reconnecting");
  $("#connection").dataset.state = "offline";
});
client.on("queues", renderQueues);
client.on("logout", (reason) => {
  if (monitoring) forgetMonitor(monitoring.monitor);
  // the socket is gone: close our monitoring connections too
  for (const m of client.monitors.values()) m.close();
  client.monitors.clear();
  callStates.clear();
  asked.clear();
  showLogin(reason === "logged out" ? "" : t.locale === "en" ? reason : t("login.ended"));
});

$("#login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    await client.login($("#login-username").value.trim(), $("#login-password").value);
    $("#login-password").value = "";
    await start();
  } catch (error) {
    showLogin(t.error(error, "console"));
  }
});
$("#logout").addEventListener("click", () => client.logout());

buildMonitorButtons();
showDemoLogin();

/** For the console and the tests: the client (its `monitors`) and the call being monitored. */
window.segueBoard = {
  client,
  get monitoring() {
    return monitoring;
  },
};

if (client.token) start();
else showLogin();
