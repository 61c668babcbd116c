// One client process of `python -m bench.load --client node`: the same clients as bench/load.py's
// Python worker (agents go available and accept offers, customers start a conversation, then send
// closed loop and open loop), on Node's event loop and the `ws` package, because the load generator
// shares this machine's cores with the nodes it measures and costs less here (bench.load prints
// the clients' CPU per message).
//
// Talks to the parent over stdio, one JSON value a line: it reads its settings, "go", the closed
// loop's start time (wall clock, seconds), then [start, rate per customer, seconds] of the open
// loop or null; it writes [kind, value] lines: agents, connected, closed, open, result, error.
import readline from "node:readline";
import WebSocket from "ws";

const now = () => (performance.timeOrigin + performance.now()) / 1000; // wall clock, seconds
const sleep = (s) => new Promise((resolve) => setTimeout(resolve, Math.max(0, s * 1000)));
// resolves once written: a large line to a pipe is written in parts, after write() returned
const say = (kind, value) =>
  new Promise((resolve) => process.stdout.write(JSON.stringify([kind, value ?? null]) + "\n", resolve));

const inbox = [];
let waiting = null;
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const value = JSON.parse(line);
  if (waiting) {
    const w = waiting;
    waiting = null;
    w(value);
  } else inbox.push(value);
});
const hear = () => (inbox.length ? Promise.resolve(inbox.shift()) : new Promise((r) => (waiting = r)));

function digits(text) {
  let i = 0;
  while (i < text.length && text.charCodeAt(i) >= 48 && text.charCodeAt(i) <= 57) i++;
  return i;
}

/** One Socket.IO connection to one namespace over a WebSocket (Engine.IO 4, Socket.IO 5). */
class LeanSocket {
  constructor(url, ns, onEvent) {
    this.url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket";
    this.ns = ns;
    this.onEvent = onEvent;
    this.acks = new Map();
    this.nextId = 1;
    this.closed = false;
  }

  connect(auth) {
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      const ws = new WebSocket(this.url, { perMessageDeflate: false });
      this.ws = ws;
      ws.on("message", (data) => this.frame(data.toString(), auth));
      ws.on("error", (err) => this.pending?.reject(err));
      ws.on("close", () => {
        this.closed = true;
        for (const waiter of this.acks.values()) waiter.reject(new Error("socket closed"));
        this.acks.clear();
      });
    });
  }

  frame(data, auth) {
    const kind = data[0];
    if (kind === "0") return this.ws.send(`40${this.ns},${JSON.stringify(auth)}`);
    if (kind === "2") return this.ws.send("3"); // Engine.IO ping
    if (kind !== "4") return;
    const type = data[1];
    let rest = data.slice(2);
    if (rest.startsWith(this.ns + ",")) rest = rest.slice(this.ns.length + 1);
    if (type === "2") {
      const args = JSON.parse(rest.slice(digits(rest)));
      this.onEvent(args[0], args[1]);
    } else if (type === "3") {
      const i = digits(rest);
      const waiter = this.acks.get(Number(rest.slice(0, i)));
      if (waiter) waiter.resolve(JSON.parse(rest.slice(i))[0]);
    } else if (type === "0" && this.pending) {
      this.pending.resolve();
      this.pending = null;
    } else if (type === "4" && this.pending) {
      this.pending.reject(new Error(`connect refused: ${rest}`));
      this.pending = null;
    }
  }

  call(event, data, timeout = 60) {
    if (this.closed) return Promise.reject(new Error("socket closed"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.acks.delete(id);
        reject(new Error("TimeoutError"));
      }, timeout * 1000);
      const done = (fn) => (value) => {
        clearTimeout(timer);
        this.acks.delete(id);
        fn(value);
      };
      this.acks.set(id, { resolve: done(resolve), reject: done(reject) });
      this.ws.send(`42${this.ns},${id}${JSON.stringify([event, data])}`);
    });
  }

  close() {
    try {
      this.ws?.close();
    } catch {}
  }
}

const idKey = (id) => id.split("-").map(Number);
const newer = (a, b) => {
  const [x, y] = [idKey(a), idKey(b)];
  return x[0] > y[0] || (x[0] === y[0] && (x[1] || 0) > (y[1] || 0));
};

async function main() {
  const { index, urls, agents, customers, seconds } = await hear();
  const received = new Set();
  let dups = 0, resyncs = 0, redelivered = 0, sent = 0;
  const latencies = { c: [], o: [] }, delivered = { c: 0, o: 0 }, lastRx = { c: 0, o: 0 };
  const lastIds = new Map();
  const held = new Map(); // agent socket -> its conversations
  const offers = [];
  const socks = [];
  const acked = {}, errors = {};
  const count = (code) => (errors[code] = (errors[code] || 0) + 1);

  const onMessage = (data, resumed) => {
    const cid = data.conversation_id;
    if (newer(data.id, lastIds.get(cid) || "0-0")) lastIds.set(cid, data.id);
    const eid = `${cid}/${data.id}`; // stream ids are per conversation
    if (received.has(eid)) {
      if (resumed) redelivered++; // at least once on the wire, dropped by id (not shown twice)
      else dups++;
      return;
    }
    received.add(eid);
    const text = data.data.text;
    if (text.startsWith("b ")) {
      const [, phase, , sentAt] = text.split(" ", 4);
      const at = now();
      latencies[phase].push((at - Number(sentAt)) * 1000);
      delivered[phase]++;
      lastRx[phase] = at;
    }
  };

  const resync = async (sock) => {
    resyncs++;
    for (const cid of held.get(sock) || []) {
      const payload = { conversation_id: cid };
      if (lastIds.get(cid)) payload.after = lastIds.get(cid);
      let reply;
      try {
        reply = await sock.call("conversation.open", payload);
      } catch {
        continue;
      }
      for (const e of reply.events || []) {
        if (e.type === "message" && e.author.kind === "customer") onMessage(e, true);
      }
    }
  };

  const accept = async (sock, cid) => {
    try {
      const reply = await sock.call("offer.accept", { conversation_id: cid });
      if (reply.ok) {
        if (!held.has(sock)) held.set(sock, new Set());
        held.get(sock).add(cid);
      } else process.stderr.write(`bench: offer.accept refused: ${JSON.stringify(reply.error)}\n`);
    } catch {}
  };

  for (const [nodeIndex, token] of agents) {
    const sock = new LeanSocket(urls[nodeIndex], "/agent", (name, data) => {
      if (name === "offer") accept(sock, data.conversation.id);
      else if (name === "resync") resync(sock);
      else if (name === "event" && data.type === "message" && data.author.kind === "customer") onMessage(data, false);
    });
    await sock.connect({ v: 1, token });
    const reply = await sock.call("presence.set", { status: "available" });
    if (!reply.ok) throw new Error(`presence.set: ${JSON.stringify(reply)}`);
    socks.push(sock);
  }
  say("agents", index);
  await hear(); // every process's agents are available: customers may start

  const mine = [];
  const assigned = new Set();
  let allAssigned;
  const assignedAll = new Promise((r) => (allAssigned = r));
  const onCustomer = (name, data) => {
    if (name === "event" && data.type === "conversation.assigned") {
      assigned.add(data.conversation_id);
      if (assigned.size === customers.length) allAssigned();
    }
  };
  let next = 0;
  const opener = async () => {
    while (next < customers.length) {
      const nodeIndex = customers[next++];
      const sock = new LeanSocket(urls[nodeIndex], "/customer", onCustomer);
      socks.push(sock);
      await sock.connect({ v: 1 });
      const reply = await sock.call("conversation.start", { channel: "chat" });
      if (!reply.ok) throw new Error(`conversation.start: ${JSON.stringify(reply)}`);
      mine.push([sock, reply.conversation.id]);
    }
  };
  await Promise.all(Array.from({ length: 32 }, opener)); // a few dozen at a time (set-up is not measured)
  await Promise.race([assignedAll, sleep(seconds > 0 ? 120 : 0)]);
  const unassigned = mine.filter(([, cid]) => !assigned.has(cid)).length;
  const active = mine.filter(([, cid]) => assigned.has(cid));
  say("connected", index);

  const sendOne = async (sock, cid, phase, seq) => {
    if (sock.closed) return; // the node closed this connection: the sender stops
    const text = `b ${phase} ${seq} ${now().toFixed(6)} hello, is my order on its way?`;
    sent++;
    let reply;
    try {
      reply = await sock.call("message.send", { conversation_id: cid, text, client_id: `${phase}${seq}` }, 60);
    } catch (err) {
      count(err.message === "TimeoutError" ? "TimeoutError" : "ConnectionError");
      return;
    }
    if (reply.ok) (acked[cid] ||= []).push(reply.event.id);
    else {
      const code = String(reply.error?.code);
      count(code);
      if (code === "rate_limited") await sleep((reply.error.retry_after_ms || 100) / 1000);
    }
  };
  const drain = async () => {
    let last = -1, quietSince = now();
    while (now() - quietSince < 3) {
      if (received.size !== last) [last, quietSince] = [received.size, now()];
      await sleep(0.25);
    }
  };
  const cpu = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  };
  const phaseResult = (phase, cpuS) => ({ delivered: delivered[phase], latencies: latencies[phase],
    last_rx: lastRx[phase], cpu_s: cpuS });

  // closed loop: each customer sends the next message when the last one is acknowledged
  let startAt = await hear();
  await sleep(startAt - now());
  let cpu0 = cpu();
  const stopAt = startAt + seconds;
  await Promise.all(active.map(async ([sock, cid]) => {
    let seq = 0;
    while (now() < stopAt && !sock.closed) await sendOne(sock, cid, "c", ++seq);
  }));
  let cpu1 = cpu();
  await drain();
  say("closed", phaseResult("c", cpu1 - cpu0));

  // open loop at a rate the parent chose
  const order = await hear();
  if (order !== null) {
    const [openAt, rateEach, openSeconds] = order;
    await sleep(openAt - now());
    cpu0 = cpu();
    if (rateEach > 0) {
      const interval = 1 / rateEach;
      await Promise.all(active.map(async ([sock, cid]) => {
        const pending = [];
        let at = openAt + Math.random() * interval, seq = 0;
        while (at < openAt + openSeconds) {
          await sleep(at - now());
          pending.push(sendOne(sock, cid, "o", ++seq));
          at += interval;
        }
        await Promise.all(pending);
      }));
    }
    cpu1 = cpu();
    await drain();
    say("open", phaseResult("o", cpu1 - cpu0));
  }
  const heldNow = socks.filter((s) => !s.closed).length;
  await say("result", { resyncs, redelivered, unassigned, acked, received: [...received].sort(), dups, errors, sent,
    held: heldNow });
  for (const s of socks) s.close();
  process.exit(0);
}

main().catch(async (err) => {
  await say("error", `node client: ${err?.stack || err}`);
  process.exit(1);
});
