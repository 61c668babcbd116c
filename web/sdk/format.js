/**
 * Plain-text descriptions of Segue events, shared by the widget, the agent console and the
 * wallboard. Everything returned is a string meant for textContent.
 */

export const CHANNEL_LABELS = { chat: "Chat", voice: "Voice", video: "Video", screen: "Screen share" };

/** "chat" → "Chat"; unknown channels are shown as they are. */
export function channelLabel(channel) {
  return CHANNEL_LABELS[channel] ?? String(channel ?? "");
}

function agentName(agent, fallback = "an agent") {
  if (!agent) return fallback;
  if (typeof agent === "string") return agent;
  return agent.name || agent.id || fallback;
}

function reasonText(reason) {
  return { timeout: "did not answer in time", declined: "declined", taken: "was taken", cancelled: "was cancelled" }[reason] ?? String(reason ?? "");
}

function target(to) {
  if (!to) return "someone";
  if (to.agent) return agentName(to.agent);
  if (to.queue) return `the ${to.queue} queue`;
  return "someone";
}

/**
 * How an event reads in a log: `{kind, text}` where kind is "message", "note", "consult" or
 * "system". `viewer` is "customer" or "agent" (customers get friendlier, less internal wording).
 * `customerName` (the conversation's customer, from its summary) names the customer in call
 * events, whose author may carry only the connection's generic name.
 */
export function describeEvent(event, { viewer = "agent", customerName = null } = {}) {
  const data = event.data ?? {};
  const customer = viewer === "customer";
  switch (event.type) {
    case "message":
      return { kind: "message", text: String(data.text ?? "") };
    case "note":
      return { kind: "note", text: String(data.text ?? "") };
    case "consult.message":
      return { kind: "consult", text: String(data.text ?? "") };
    case "conversation.created": {
      const where = data.context?.page_title || data.context?.page_url;
      if (customer) return { kind: "system", text: "Conversation started" };
      return {
        kind: "system",
        text: `Conversation started (${channelLabel(data.channel ?? "chat")}, queue ${data.queue ?? "?"})${where ? ` from “${where}”` : ""}`,
      };
    }
    case "conversation.queued":
      return { kind: "system", text: customer ? "Waiting for an agent…" : `Queued in ${data.queue ?? "a queue"}` };
    case "conversation.offered":
      return { kind: "system", text: `Offered to ${agentName(data.agent)}` };
    case "conversation.assigned":
      return { kind: "system", text: `${agentName(data.agent)} joined the conversation` };
    case "conversation.overflowed":
      return { kind: "system", text: `Overflowed from ${data.from_queue} to ${data.to_queue}` };
    case "transfer.requested":
      return {
        kind: "system",
        text: `${data.mode === "warm" ? "Warm" : "Cold"} transfer requested to ${target(data.to)}${data.note ? `: ${data.note}` : ""}`,
      };
    case "transfer.completed":
      if (customer) {
        return { kind: "system", text: data.to?.agent ? `You were transferred to ${agentName(data.to.agent)}` : "You were transferred to another agent" };
      }
      return { kind: "system", text: `Transferred from ${agentName(data.from_agent)} to ${target(data.to)} (${data.mode ?? "cold"})` };
    case "transfer.accepted":
      return { kind: "system", text: `${agentName(data.agent)} accepted the transfer` };
    case "transfer.cancelled": {
      if (data.by) return { kind: "system", text: `Transfer cancelled by ${agentName(data.by)}` };
      if (data.reason) return { kind: "system", text: `Transfer cancelled: ${agentName(data.agent)} ${reasonText(data.reason)}` };
      return { kind: "system", text: "Transfer cancelled" };
    }
    case "conversation.requeued":
      return { kind: "system", text: `${agentName(data.agent)} ${reasonText(data.reason)}: back in the queue` };
    case "conversation.closed": {
      const by = data.by;
      const kind = typeof by === "string" ? by : by?.kind;
      let who;
      if (kind === "customer") who = customer ? "you" : "the customer";
      else if (kind === "system" || !by) who = "the system";
      else who = agentName(by, "the agent");
      const disposition = !customer && data.disposition ? ` — ${data.disposition}` : "";
      return { kind: "system", text: `Conversation closed by ${who}${disposition}` };
    }
    case "conversation.rated":
      return { kind: "system", text: `Rated ${data.score}/5${data.comment ? `: “${data.comment}”` : ""}` };
    default:
      if (String(event.type).startsWith("call.")) return { kind: "system", text: describeCall(event, customer, customerName) };
      return { kind: "system", text: String(event.type) };
  }
}

function who(author, customer, fallback, customerName = null) {
  if (!author) return fallback;
  if (author.kind === "customer") return customer ? "You" : customerName || author.name || "The customer";
  return agentName(author, fallback);
}

const MONITOR_TEXT = {
  listen: "is listening to the call",
  whisper: "is whispering to the agent",
  barge: "barged into the call",
};

/** The calls module's log events (`call.*`, issue 4), in words. */
function describeCall(event, customer, customerName) {
  const data = event.data ?? {};
  const media = channelLabel(data.media ?? data.channel ?? "voice").toLowerCase();
  const by = who(data.by ?? (event.author?.kind === "system" ? null : event.author), customer, "Someone", customerName);
  const role = data.role === "customer" ? (customer ? "You" : "The customer") : data.role === "agent" ? (customer ? "The agent" : "The agent") : "Someone";
  switch (event.type) {
    case "call.requested":
      if (data.media === "voice" || !data.media) return `${by} asked for a voice call`;
      return data.media === "screen" ? `${by} asked for screen sharing` : `${by} asked for ${media}`;
    case "call.accepted":
      return data.media === "voice" || !data.media ? "Voice call started" : `${channelLabel(data.media)} started`;
    case "call.declined":
      if (data.reason === "cancelled") return `${by} withdrew the ${media} request`;
      return `${by} declined the ${media} request`;
    case "call.video_on":
      return `${role} turned the camera on`;
    case "call.video_off":
      return `${role} turned the camera off`;
    case "call.screen_on":
      return `${role} started sharing the screen`;
    case "call.screen_off":
      return `${role} stopped sharing the screen`;
    case "call.held":
      return data.held ? "Call on hold" : "Call resumed";
    case "call.leg_lost":
      return `${role}'s call connection dropped${data.grace_s ? ` (waiting up to ${formatDuration(data.grace_s)})` : ""}`;
    case "call.reconnected":
      return `${role} reconnected to the call`;
    case "call.transferred":
      return `Call transferred${data.to_agent ? ` to ${agentName(data.to_agent)}` : ""}`;
    case "call.monitored":
      // agents only: a supervisor started monitoring, or switched mode
      return `${by} (supervisor) ${MONITOR_TEXT[data.mode] ?? `is monitoring the call (${data.mode ?? "?"})`}`;
    case "call.monitor_ended": {
      const why = { disconnected: "their page closed", connection_lost: "connection lost" }[data.reason];
      return `${by} (supervisor) stopped monitoring the call${why ? ` (${why})` : ""}`;
    }
    case "call.supervisor_joined":
      return customer ? `A supervisor${data.by?.name ? `, ${data.by.name},` : ""} joined the call` : `${by} (supervisor) joined the call`;
    case "call.supervisor_left":
      return customer ? "The supervisor left the call" : `${by} (supervisor) left the call`;
    case "call.ended": {
      const total = Object.values(data.durations ?? {}).reduce((a, b) => Math.max(a, Number(b) || 0), 0);
      return `Call ended${total ? ` after ${formatDuration(total)}` : ""}${data.reason ? ` (${String(data.reason).replace(/_/g, " ")})` : ""}`;
    }
    default:
      return event.type.slice(5).replace(/[._]/g, " ").replace(/^./, (c) => c.toUpperCase());
  }
}

/** "14:05" for today, "3 Mar 14:05" otherwise. */
export function formatTime(ts) {
  if (!ts) return "";
  const date = new Date(ts);
  const now = new Date();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === now.toDateString()) return time;
  return `${date.toLocaleDateString([], { day: "numeric", month: "short" })} ${time}`;
}

/** 75 → "1 min 15 s"; 20 → "20 s". */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  const rest = s % 60;
  if (m < 60) return rest ? `${m} min ${rest} s` : `${m} min`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** The channel an event is about (for channel markers): `data.channel`, or null when it names none. */
export function eventChannel(event) {
  return event.data?.channel ?? null;
}
