/**
 * A headless chat: the site draws its own UI and talks to Segue through SegueCustomer only
 * (docs/sdk.md, "Headless"; typed version: headless.ts). Served by every node at
 * /sdk/examples/headless.html; `?url=https://segue.example.com` talks to another node,
 * `?locale=zh-CN` picks the language of the page's strings.
 */
import { SegueCustomer } from "../segue.js";
import { browserLocale, translator } from "../i18n.js";

const params = new URLSearchParams(location.search);
const t = translator(params.get("locale") ?? browserLocale());
const $ = (id) => document.getElementById(id);

document.documentElement.lang = t.locale;
$("title").textContent = document.title = t("widget.title");
$("text").placeholder = t("widget.message.placeholder");
$("text").setAttribute("aria-label", t("widget.message.label"));
$("send").textContent = t("widget.send");

const customer = new SegueCustomer({ url: params.get("url") ?? undefined, storagePrefix: "segue.headless." });
let conversation = null;
let unfollow = [];

function setStatus(key, state) {
  $("status").textContent = t(key);
  $("status").dataset.state = state;
}

function showError(error) {
  $("error").textContent = error?.message ?? String(error);
  $("error").hidden = false;
}

/** One log line per message (and a line when the conversation closes); always text, never HTML. */
function line(event) {
  const item = document.createElement("li");
  item.dataset.eventId = event.id;
  item.dataset.author = event.author?.kind ?? "system";
  if (event.type === "message") {
    const who = event.author?.kind === "customer" ? t("who.you") : event.author?.name || t("widget.agent");
    item.textContent = `${who}: ${event.data.text}`;
  } else if (event.type === "conversation.assigned") {
    item.textContent = t("event.assigned", { agent: event.data.agent?.name ?? t("widget.agent") });
  } else if (event.type === "conversation.closed") {
    item.textContent = event.author?.kind === "customer"
      ? t("event.closed.you")
      : t("event.closed.agent", { agent: event.author?.name ?? t("widget.agent") });
  } else {
    return null;
  }
  return item;
}

/** The log from the conversation's events: sorted by id and without duplicates (the SDK's job). */
function render() {
  $("log").replaceChildren(...(conversation?.events ?? []).map(line).filter(Boolean));
}

function follow(next) {
  for (const off of unfollow) off();
  conversation = next;
  render();
  unfollow = [
    conversation.on("event", () => render()),
    conversation.on("typing", ({ author, typing }) => {
      $("typing").hidden = !typing || author.kind === "customer";
      $("typing").textContent = t("widget.typing", { name: author.name || t("widget.agent") });
    }),
    conversation.on("position", ({ position }) => {
      $("position").hidden = position == null;
      $("position").textContent = t("widget.position", { position });
    }),
    conversation.on("conversation", (summary) => {
      if (summary.state !== "queued" && summary.state !== "offered") $("position").hidden = true;
    }),
  ];
}

customer.on("session", () => setStatus("widget.status.online", "online"));
customer.on("disconnect", () => setStatus("widget.status.reconnecting", "offline"));
customer.on("connect_error", () => setStatus("widget.status.unreachable", "offline"));
customer.on("error", showError);

$("composer").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("text").value = "";
  try {
    if (!conversation || conversation.isClosed) follow(await customer.startConversation({ text }));
    else await conversation.send(text);
    $("error").hidden = true;
  } catch (error) {
    $("text").value = text;
    showError(error);
  }
});
$("text").addEventListener("input", () => conversation?.noteTyping());

setStatus("widget.status.connecting", "connecting");
const remembered = customer.openConversations().at(-1);
if (remembered) follow(remembered);
customer.connect().catch(showError);

// for the test and the curious: window.segueHeadless.conversation
window.segueHeadless = { customer, get conversation() { return conversation; } };
