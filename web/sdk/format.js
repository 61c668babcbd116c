/**
 * Plain-text descriptions of Segue events, shared by the widget, the agent console and the
 * wallboard. Everything returned is a string meant for textContent. Every function takes an
 * optional translator from i18n.js (`t`, default English).
 */
import { english } from "./i18n.js";

/** English channel labels (kept for callers that read the map; channelLabel() translates). */
export const CHANNEL_LABELS = { chat: "Chat", voice: "Voice", video: "Video", screen: "Screen share" };

/** "chat" → "Chat" (in the translator's language); unknown channels are shown as they are. */
export function channelLabel(channel, t = english) {
  return t.has(`channel.${channel}`) ? t(`channel.${channel}`) : String(channel ?? "");
}

/** The name the server gives a customer who gave none (signaling: anonymous visitors). */
export const UNNAMED_CUSTOMER = "Visitor";

/** A person's name as shown: the server's name for an unnamed visitor in the reader's language. */
export function personName(name, t = english) {
  return name === UNNAMED_CUSTOMER ? t("who.visitor") : name;
}

/** "follow_up" → "Needs follow-up" (a wrap-up disposition); other values are shown as they are. */
export function dispositionLabel(disposition, t = english) {
  return t.has(`disposition.${disposition}`) ? t(`disposition.${disposition}`) : String(disposition ?? "");
}

/** A channel in the middle of a sentence ("the video request"). */
function mediaWord(channel, t) {
  return t.has(`media.${channel}`) ? t(`media.${channel}`) : String(channel ?? "");
}

function agentName(agent, t, fallback = t("who.an_agent")) {
  if (!agent) return fallback;
  if (typeof agent === "string") return agent;
  return agent.name || agent.id || fallback;
}

function reasonText(reason, t) {
  return t.has(`reason.${reason}`) ? t(`reason.${reason}`) : String(reason ?? "");
}

function target(to, t) {
  if (!to) return t("who.anyone");
  if (to.agent) return agentName(to.agent, t);
  if (to.queue) return t("who.queue", { queue: to.queue });
  return t("who.anyone");
}

/**
 * How an event reads in a log: `{kind, text, known}` where kind is "message", "note", "consult"
 * or "system"; `known: false` is added for event types this module has no words for (the widget
 * hides those; the console shows the raw type). `viewer` is "customer" or "agent" (customers get
 * friendlier, less internal wording). `customerName` (the conversation's customer, from its
 * summary) names the customer in call events, whose author may carry only the connection's
 * generic name. `t` is a translator from i18n.js (default English).
 */
export function describeEvent(event, { viewer = "agent", customerName = null, t = english } = {}) {
  return describe(event, viewer === "customer", customerName, t);
}

function describe(event, customer, customerName, t) {
  const data = event.data ?? {};
  const system = (text) => ({ kind: "system", text });
  switch (event.type) {
    case "message":
      return { kind: "message", text: String(data.text ?? "") };
    case "note":
      return { kind: "note", text: String(data.text ?? "") };
    case "consult.message":
      return { kind: "consult", text: String(data.text ?? "") };
    case "conversation.created": {
      const where = data.context?.page_title || data.context?.page_url;
      if (customer) return system(t("event.started"));
      const params = { channel: channelLabel(data.channel ?? "chat", t), queue: data.queue ?? "?", where };
      return system(t(where ? "event.started.detail_from" : "event.started.detail", params));
    }
    case "conversation.queued":
      return system(customer ? t("event.queued.customer") : t("event.queued", { queue: data.queue ?? "?" }));
    case "conversation.offered":
      return system(t("event.offered", { agent: agentName(data.agent, t) }));
    case "conversation.assigned":
      return system(t("event.assigned", { agent: agentName(data.agent, t) }));
    case "conversation.overflowed":
      return system(t("event.overflowed", { from: data.from_queue, to: data.to_queue }));
    case "transfer.requested": {
      const text = t(data.mode === "warm" ? "event.transfer.requested.warm" : "event.transfer.requested.cold", { target: target(data.to, t) });
      return system(data.note ? t("event.with_note", { text, note: data.note }) : text);
    }
    case "transfer.completed":
      if (customer) {
        return system(data.to?.agent ? t("event.transfer.completed.you_to", { agent: agentName(data.to.agent, t) }) : t("event.transfer.completed.you"));
      }
      return system(t("event.transfer.completed", {
        from: agentName(data.from_agent, t),
        target: target(data.to, t),
        mode: t(data.mode === "warm" ? "transfer.mode.warm" : "transfer.mode.cold"),
      }));
    case "transfer.accepted":
      return system(t("event.transfer.accepted", { agent: agentName(data.agent, t) }));
    case "transfer.cancelled": {
      if (data.by) return system(t("event.transfer.cancelled_by", { agent: agentName(data.by, t) }));
      if (data.reason) return system(t("event.transfer.cancelled_because", { agent: agentName(data.agent, t), reason: reasonText(data.reason, t) }));
      return system(t("event.transfer.cancelled"));
    }
    case "conversation.requeued":
      return system(t("event.requeued", { agent: agentName(data.agent, t), reason: reasonText(data.reason, t) }));
    case "conversation.closed": {
      const by = data.by;
      const kind = typeof by === "string" ? by : by?.kind;
      let text;
      if (kind === "customer") text = t(customer ? "event.closed.you" : "event.closed.customer");
      else if (kind === "system" || !by) text = t("event.closed.system");
      else text = t("event.closed.agent", { agent: agentName(by, t, t("who.agent")) });
      return system(!customer && data.disposition ? t("event.with_disposition", { text, disposition: dispositionLabel(data.disposition, t) }) : text);
    }
    case "conversation.rated":
      return system(t(data.comment ? "event.rated.comment" : "event.rated", { score: data.score, comment: data.comment }));
    case "attributes.updated": {
      const changes = Object.entries(data.attributes ?? {})
        .map(([key, value]) => (value === null ? t("event.attribute_removed", { key }) : `${key} = ${String(value)}`));
      return system(t("event.attributes_updated", { changes: t.list(changes) }));
    }
    case "page.viewed":
      return system(t("event.page_viewed", { page: data.title ? `${data.title} (${data.url})` : String(data.url ?? "") }));
    default:
      if (String(event.type).startsWith("call.")) return system(describeCall(event, customer, customerName, t));
      return { kind: "system", text: String(event.type), known: false };
  }
}

function who(author, customer, fallback, customerName, t) {
  if (!author) return fallback;
  if (author.kind === "customer") return customer ? t("who.you") : personName(customerName || author.name, t) || t("who.customer");
  return agentName(author, t, fallback);
}

/** The calls module's log events (`call.*`, issue 4), in words. */
function describeCall(event, customer, customerName, t) {
  const data = event.data ?? {};
  const channel = data.media ?? data.channel ?? "voice";
  const media = mediaWord(channel, t);
  const by = who(data.by ?? (event.author?.kind === "system" ? null : event.author), customer, t("who.someone"), customerName, t);
  const you = data.role === "customer" && customer;
  const role = data.role === "customer" ? t(customer ? "who.you" : "who.customer") : data.role === "agent" ? t("who.agent") : t("who.someone");
  switch (event.type) {
    case "call.requested":
      if (data.media === "voice" || !data.media) return t("call.requested.voice", { who: by });
      return t(data.media === "screen" ? "call.requested.screen" : "call.requested.video", { who: by });
    case "call.accepted":
      if (data.media === "voice" || !data.media) return t("call.accepted.voice");
      return t(data.media === "screen" ? "call.accepted.screen" : "call.accepted.video");
    case "call.declined":
      return t(data.reason === "cancelled" ? "call.withdrawn" : "call.declined", { who: by, media });
    case "call.video_on":
      return t("call.video_on", { who: role });
    case "call.video_off":
      return t("call.video_off", { who: role });
    case "call.screen_on":
      return t("call.screen_on", { who: role });
    case "call.screen_off":
      return t("call.screen_off", { who: role });
    case "call.held":
      return t(data.held ? "call.held" : "call.resumed");
    case "call.leg_lost": {
      const duration = data.grace_s ? t.duration(data.grace_s) : null;
      if (you) return t(duration ? "call.leg_lost.you_grace" : "call.leg_lost.you", { duration });
      return t(duration ? "call.leg_lost.grace" : "call.leg_lost", { who: role, duration });
    }
    case "call.reconnected":
      return t("call.reconnected", { who: role });
    case "call.transferred": {
      // the agent's display name (the server adds it): a customer never sees a login id
      const to = data.to_agent;
      const name = data.to_agent_name || (to && typeof to === "object" ? agentName(to, t) : customer ? null : to);
      return name ? t("call.transferred.to", { agent: name }) : t("call.transferred");
    }
    case "call.monitored":
      // agents only: a supervisor started monitoring, or switched mode
      return t(`call.monitored.${["listen", "whisper", "barge"].includes(data.mode) ? data.mode : "other"}`, { who: by, mode: data.mode ?? "?" });
    case "call.monitor_ended": {
      const whyKey = `call.monitor_ended.${data.reason}`;
      if (data.reason && t.has(whyKey)) return t("call.monitor_ended.why", { who: by, why: t(whyKey) });
      return t("call.monitor_ended", { who: by });
    }
    case "call.supervisor_joined":
      if (customer) return data.by?.name ? t("call.supervisor_joined.customer_named", { name: data.by.name }) : t("call.supervisor_joined.customer");
      return t("call.supervisor_joined", { who: by });
    case "call.supervisor_left":
      return customer ? t("call.supervisor_left.customer") : t("call.supervisor_left", { who: by });
    case "call.ended": {
      const total = Object.values(data.durations ?? {}).reduce((a, b) => Math.max(a, Number(b) || 0), 0);
      const text = total ? t("call.ended.after", { duration: t.duration(total) }) : t("call.ended");
      if (!data.reason) return text;
      // English readers get any reason spelled out; other languages only the reasons they have words for
      const reasonKey = `call.end_reason.${data.reason}`;
      if (t.has(reasonKey)) return t("call.ended.reason", { text, reason: t(reasonKey) });
      return t.locale === "en" ? t("call.ended.reason", { text, reason: String(data.reason).replace(/_/g, " ") }) : text;
    }
    default:
      if (t.locale !== "en") return t("call.other");
      return event.type.slice(5).replace(/[._]/g, " ").replace(/^./, (c) => c.toUpperCase());
  }
}

/** "14:05" for today, "3 Mar 14:05" otherwise (in the translator's locale). */
export function formatTime(ts, t = english) {
  return t.time(ts);
}

/** 75 → "1 min, 15 sec"; 20 → "20 sec" (in the translator's locale). */
export function formatDuration(seconds, t = english) {
  return t.duration(seconds);
}

/** The channel an event is about (for channel markers): `data.channel`, or null when it names none. */
export function eventChannel(event) {
  return event.data?.channel ?? null;
}
