/**
 * What a conversation's state means on screen, derived in one place from its summary and events.
 *
 * The agent console, the widget and the wallboard all show the same facts — who works on a
 * conversation (assigned / offered / read-only / transferred away), which channels it uses now,
 * how loaded an agent is, whether a call rings or runs. Each page used to work these out on its
 * own, and they drifted (a console that kept saying "offered" after its agent had transferred the
 * conversation away; a wallboard that said "Chat" during a video call). Every page now asks this
 * module; the server's `summary()` (signaling/service.py) stays the one source of the fields.
 *
 * Pure functions of plain data: no DOM, no socket. Texts come back as i18n keys + parameters
 * (`{key, params}`) or, with a translator `t`, as strings.
 */
import { english } from "./i18n.js";

/** An agent reference in a payload is an id or `{id, name}`. */
export function agentId(agent) {
  if (!agent) return null;
  return typeof agent === "string" ? agent : agent.id ?? null;
}

/** The name to show for an agent reference (never empty when there is one). */
export function agentName(agent) {
  if (!agent) return "";
  return typeof agent === "string" ? agent : agent.name || agent.id || "";
}

const CHANNEL_ORDER = ["chat", "voice", "video", "screen"];

function ordered(channels) {
  const known = CHANNEL_ORDER.filter((c) => channels.includes(c));
  return [...known, ...channels.filter((c) => !CHANNEL_ORDER.includes(c))];
}

/**
 * The channels a conversation uses now: the summary's `channels` (the server adds voice, video
 * and screen share while a call carries them), chat first. A call from the web that has not
 * started yet is its own channel ("voice" / "video").
 */
export function channelsNow(summary) {
  const list = Array.isArray(summary?.channels) && summary.channels.length ? summary.channels : [summary?.channel ?? "chat"];
  return ordered([...new Set(list)]);
}

/** Every channel the conversation has used, with the seconds spent on each: `[[channel, seconds]]`. */
export function channelsUsed(summary) {
  const used = Array.isArray(summary?.channels_used) && summary.channels_used.length ? summary.channels_used : channelsNow(summary);
  const time = summary?.channel_time ?? {};
  return ordered([...new Set(used)]).map((c) => [c, typeof time[c] === "number" ? time[c] : null]);
}

/** The channel a conversation is "about" in one word (a call outranks the chat it grew from). */
export function mainChannel(summary) {
  const now = channelsNow(summary);
  for (const c of ["screen", "video", "voice"]) if (now.includes(c)) return c;
  return now[0] ?? "chat";
}

/** Whether a channel is a call (voice or video). */
export function isCall(channel) {
  return channel === "voice" || channel === "video";
}

/**
 * An agent's load (`{chat: 2, voice: 1}`) as `[[channel, count]]`, channels in the usual order,
 * empty channels left out.
 */
export function loadEntries(load) {
  const entries = Object.entries(load ?? {}).filter(([, n]) => Number(n) > 0);
  const order = ordered(entries.map(([c]) => c));
  return order.map((c) => [c, Number(load[c])]);
}

/** An offer as the console shows it: its channel, whether it is a call, a transfer. */
export function offerView(offer) {
  const payload = offer?.payload ?? {};
  const summary = offer?.conversation ?? payload.conversation ?? {};
  const channel = payload.channel ?? summary.channel ?? "chat";
  return {
    channel,
    call: isCall(channel),
    transfer: (offer?.kind ?? payload.kind) === "transfer",
    warm: payload.mode === "warm" || summary.transfer?.mode === "warm",
  };
}

/**
 * Who handed the conversation on, by this agent: the last transfer this agent made (cold, or a warm
 * one completed), unless it came back to them since. `{to, mode, note}` or null.
 */
export function handedOverBy(conversation, me) {
  if (!me) return null;
  let handed = null;
  for (const event of conversation?.events ?? []) {
    const d = event.data ?? {};
    if (event.type === "transfer.requested" && event.author?.id === me && d.mode !== "warm") {
      handed = { to: d.to ?? null, mode: "cold", note: d.note ?? null };
    } else if (event.type === "transfer.completed") {
      if (agentId(d.from_agent) === me) handed = { to: d.to ?? null, mode: d.mode ?? "cold", note: handed?.note ?? null };
      else if (agentId(d.to?.agent) === me) handed = null;
    } else if (event.type === "conversation.assigned" && agentId(d.agent) === me) {
      handed = null;
    }
  }
  // a transfer this agent made that has not been taken up yet shows in the summary, too
  const s = conversation?.summary;
  if (!handed && s?.transfer && agentId(s.transfer.from_agent) === me && s.transfer.mode !== "warm" && agentId(s.agent) !== me) {
    handed = { to: s.transfer.to ?? null, mode: "cold", note: null };
  }
  if (handed && agentId(s?.agent) === me && s?.state !== "closed") return null; // it came back to me
  return handed;
}

/**
 * How a conversation stands for the agent `me` (an id), from its summary and events:
 *
 *   {role, canWrite, badge: {key, state}, note: {key, params} | null}
 *
 * roles: "loading", "mine" (assigned to me), "transferring" (mine, a warm transfer is under way),
 * "consult" (a warm transfer to me that I accepted), "transferred" (I handed it on: read-only,
 * saying to whom, also once the next agent took it and after it closed), "offered" (waiting for
 * an agent, not me), "theirs" (another agent's), "closed".
 */
export function agentView(conversation, me) {
  const s = conversation?.summary;
  if (!s) return { role: "loading", canWrite: false, badge: { key: "state.loading", state: "" }, note: { key: "console.readonly.loading", params: {} } };
  const closed = s.state === "closed";
  const handed = handedOverBy(conversation, me);
  const to = handed?.to;
  const target = to?.agent ? agentName(to.agent) : to?.queue ?? "";
  if (handed && agentId(s.agent) !== me) {
    const who = agentName(s.agent);
    let key = "console.readonly.transferred";
    if (closed) key = "console.readonly.transferred_closed";
    else if (who && agentId(s.agent) !== agentId(to?.agent)) key = "console.readonly.transferred_now";
    return {
      role: "transferred",
      canWrite: false,
      badge: { key: "state.transferred", state: "transferred" },
      note: { key: to?.queue && !to?.agent ? `${key}.queue` : key, params: { target, agent: who || target } },
    };
  }
  if (closed) return { role: "closed", canWrite: false, badge: { key: "state.closed", state: "closed" }, note: { key: "console.readonly.closed", params: {} } };
  if (agentId(s.agent) === me) {
    const transferring = s.state === "transferring";
    return { role: transferring ? "transferring" : "mine", canWrite: true, badge: { key: `state.${s.state}`, state: s.state }, note: null };
  }
  const pending = s.transfer;
  if (pending && pending.accepted && agentId(pending.to?.agent) === me && s.state === "transferring") {
    return { role: "consult", canWrite: true, badge: { key: "state.transferring", state: "transferring" }, note: null };
  }
  if (s.agent) {
    return { role: "theirs", canWrite: false, badge: { key: `state.${s.state}`, state: s.state }, note: { key: "console.readonly.theirs", params: { agent: agentName(s.agent) } } };
  }
  return { role: "offered", canWrite: false, badge: { key: `state.${s.state}`, state: s.state }, note: { key: "console.readonly.waiting", params: { state: s.state } } };
}

/** A call's phase from a `call.state` object: "none", "ringing" (asked for, not answered) or "active". */
export function callPhase(callState) {
  const state = callState?.state;
  if (state === "active") return "active";
  if (state === "requested") return "ringing";
  return "none";
}

/** `{key, params}` → text with translator `t` (keys missing from the catalogue show as keys). */
export function text(message, t = english) {
  return message ? t(message.key, message.params ?? {}) : "";
}
