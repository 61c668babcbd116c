/**
 * The SDK from TypeScript: a headless customer (your own UI), a call, the widget with options and
 * callbacks, the script-tag global, the agent side. Type-checked in the test run
 * (`tsc --noEmit -p tests/ts/tsconfig.json`); the `@ts-expect-error` lines are misuses the
 * declarations must refuse, so a loosened type fails the check. The runnable page is
 * headless.html + headless.js next to this file.
 */
import { SegueAgent, SegueCustomer, SegueError, compareIds } from "../segue.js";
import type { ConversationSummary, CustomerConversation, SegueMessageEvent, SegueEvent } from "../segue.js";
import { SegueCall, supervisorOf } from "../call.js";
import type { CallState } from "../call.js";
import { mountChatWidget } from "../widget.js";
import type { ChatWidget } from "../widget.js";
import { translator, resolveLocale } from "../i18n.js";
import { describeEvent } from "../format.js";
import type {} from "../embed.js";

declare function render(line: string): void;

/* ---- a customer, headless ------------------------------------------------------------------ */

export async function chat(url: string): Promise<CustomerConversation> {
  const customer = new SegueCustomer({ url, requestTimeoutMs: 10_000 });
  customer.on("connect_error", (error) => render(`cannot connect: ${error.code} ${error.message}`));
  customer.on("message", (event, conversation) => render(`${conversation.id}: ${event.data.text}`));
  const session = await customer.connect();
  render(`hello ${session.name ?? session.customer_id}`);

  const conversation =
    customer.openConversations().at(-1) ??
    (await customer.startConversation({ queue: "general", text: "Hi!", attributes: { plan: "pro", seats: 3 } }));

  for (const event of conversation.events) show(event);
  conversation.on("event", (event, { replay }) => replay || show(event));
  conversation.on("typing", ({ author, typing }) => render(`${author.name ?? author.kind} ${typing ? "is typing" : "stopped"}`));
  conversation.on("position", ({ position, estimated_wait_s }) => render(`#${position} (${estimated_wait_s ?? "?"} s)`));
  conversation.on("conversation", (summary: ConversationSummary) => summary.state === "closed" && render("closed"));
  conversation.on("failed", ({ text, error }) => render(`not sent: ${text} (${error.code})`));

  const sent: SegueMessageEvent = await conversation.send("Where is my order?");
  conversation.markRead(sent.id);
  conversation.noteTyping();
  await customer.setAttributes({ cart_value: 129.5, coupon: null });
  await customer.pageView({ url: location.href });
  render(`agent read up to ${conversation.readUpTo("agent") ?? "nothing"}`);

  try {
    await conversation.send("");
  } catch (error) {
    if (error instanceof SegueError && error.code === "invalid") render(`field ${error.field}`);
  }
  if (conversation.isClosed && !conversation.rated) await conversation.rate(5, "Quick and friendly");

  // @ts-expect-error: no such event
  conversation.on("mesage", () => {});
  // @ts-expect-error: a typing payload has no `text`
  conversation.on("typing", ({ text }) => render(text));
  // @ts-expect-error: ratings are 1 to 5
  await conversation.rate(6);
  // @ts-expect-error: attributes are strings, numbers or booleans
  await customer.setAttributes({ cart: { items: 2 } });
  // @ts-expect-error: no fax channel
  await customer.startConversation({ channel: "fax" });
  return conversation;
}

function show(event: SegueEvent): void {
  const { kind, text } = describeEvent(event, { viewer: "customer", t: translator("zh-CN") });
  if (kind === "message") render(`${event.author.name ?? event.author.kind}: ${text}`);
  else render(text);
  // @ts-expect-error: ids are strings, compared with compareIds
  compareIds(event.id, 1);
}

/* ---- a call in that conversation ----------------------------------------------------------- */

export async function callIn(customer: SegueCustomer, conversation: CustomerConversation, audio: HTMLAudioElement): Promise<SegueCall> {
  const call = new SegueCall(customer, conversation.id, { audio: { echoCancellation: true } });
  call.on("remotestream", (stream) => (audio.srcObject = stream));
  call.on("state", (state: CallState) => render(`call ${state.state}${supervisorOf(state) ? " (supervised)" : ""}`));
  call.on("ended", ({ reason, durations }) => render(`ended: ${reason} after ${durations?.call ?? 0} s`));
  call.on("connection", (state) => state === "failed" && render("reconnecting…"));
  await call.request("voice", { pageUrl: location.href });
  await call.startVideo();
  await call.mute(true);
  const { audio: bytes } = await call.bytes();
  render(`${bytes.in} bytes in`);
  // @ts-expect-error: calls carry voice, video or screen
  await call.request("fax");
  // @ts-expect-error: no such call event
  call.on("ringing", () => {});
  return call;
}

/* ---- the widget ---------------------------------------------------------------------------- */

export function widget(url: string): ChatWidget {
  const t = translator(resolveLocale(navigator.languages), { "widget.title": "Talk to Northwind" });
  const mounted = mountChatWidget({
    url,
    queue: "general",
    queues: [{ name: "general", label: "Anything" }, { name: "billing", label: "Billing" }],
    title: t("widget.title"),
    locale: "zh-CN",
    messages: { "widget.start": "Go" },
    theme: { accent: "#0a7d5a", position: "bottom-left", mode: "auto" },
    attributes: { plan: "pro", trial: false },
    trackPages: true,
    launcher: true,
    onReady: (w) => w.open(),
    onMessage: (event, conversation) => render(`${conversation.id} ${event.type}`),
    onCallState: (state, call) => render(`${call.conversationId}: ${state.state}`),
    onConversationEnd: (summary) => render(`ended ${summary.id}`),
  });
  mounted.toggle();
  void mounted.setUser({ site: "shop", identity: { id: "u-42", name: "Ada", ts: 1_732_345_678, sig: "…" } });
  void mounted.setAttributes({ plan: "team" });
  void mounted.call({ video: true });
  mounted.setLocale("en");
  render(mounted.customer.url + (mounted.conversation?.id ?? ""));

  // @ts-expect-error: positions are bottom-right or bottom-left
  mountChatWidget({ theme: { position: "top" } });
  // @ts-expect-error: message overrides are keyed by catalogue keys
  mountChatWidget({ messages: { title: "x" } });
  return mounted;
}

/* ---- the script tag's global (embed.js) ---------------------------------------------------- */

export async function fromScriptTag(): Promise<void> {
  const Segue = window.Segue;
  if (!Segue) return; // async script not run yet
  const w = await Segue.init({ queue: "general", theme: { mode: "dark" } });
  render(w.element.tagName);
  await Segue.open();
  await Segue("open");
  await Segue.setAttributes({ plan: "pro" });
  // @ts-expect-error: not a method of the embed
  await Segue("explode");
}

/* ---- the agent side ------------------------------------------------------------------------ */

export async function agent(url: string): Promise<void> {
  const me = new SegueAgent({ url, autoOpen: true });
  if (!me.token) await me.login("demo", "demo");
  const session = await me.connect();
  render(`${session.agent.name} (${session.agent.role})`);
  me.on("offer", async (offer) => {
    render(`offer ${offer.conversationId}, ${offer.secondsLeft ?? "∞"} s left`);
    const chat = await offer.accept();
    await chat.send(await chat.renderCanned("greeting"));
    await chat.addNote("VIP");
    await chat.transfer({ queue: "billing" }, { mode: "warm", note: "refund" });
    // @ts-expect-error: transfers go to an agent or a queue
    await chat.transfer({ team: "x" });
  });
  me.on("queues", (queues) => queues.forEach((q) => render(`${q.name}: ${q.waiting}`)));
  me.on("offer.revoked", ({ conversation_id, reason }) => render(`${conversation_id} ${reason}`));
  await me.setPresence("available");
  // @ts-expect-error: presence is available, away or offline
  await me.setPresence("busy");

  const monitor = await me.monitorCall("c_1", "listen");
  monitor.on("customerstream", (stream) => render(String(stream.id)));
  monitor.on("mode", (mode) => render(mode ?? "stopped"));
  await monitor.setMode("whisper");
  // @ts-expect-error: modes are listen, whisper or barge
  await monitor.setMode("shout");
  await me.stopMonitoring("c_1");
}
