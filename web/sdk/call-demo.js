// The call demo page (call-demo.html): a bare client for call.js that the tests drive through
// window.demo. A file of its own so the page passes a Content-Security-Policy without inline script.
import { io } from "./vendor/socket.io.esm.min.js";
import { SegueCall } from "./call.js";

const params = new URLSearchParams(location.search);
const ns = "/" + (params.get("ns") || "customer");
const conversationId = params.get("conversation") || "c_demo";
const auth = params.get("token") ? { v: 1, token: params.get("token") } : { v: 1 };
const socket = io(location.origin + ns, { transports: ["websocket"], auth });
// The minimal client call.js needs: a socket and request(event, payload) with {ok} acks.
const client = {
  socket,
  request(event, payload = {}) {
    return new Promise((resolve, reject) => {
      socket.timeout(20000).emit(event, payload, (err, answer) => {
        if (err) reject(new Error(`no answer to ${event}`));
        else if (answer && answer.ok) { const { ok, ...rest } = answer; resolve(rest); }
        else reject(Object.assign(new Error(answer?.error?.message || "failed"), answer?.error || {}));
      });
    });
  },
};
const status = (t) => (document.getElementById("status").textContent = t);
window.demo = { client, ready: new Promise((r) => socket.on("connect", () => r(socket.id))) };
await window.demo.ready;
const call = new SegueCall(client, conversationId);
window.demo.call = call;
window.demo.events = [];
for (const name of ["requested", "accepted", "declined", "ended", "state", "connection", "error"]) {
  call.on(name, (p) => window.demo.events.push([name, p]));
}
call.on("remotestream", (s) => (document.getElementById("remote").srcObject = s));
call.on("screenstream", (s) => (document.getElementById("screenview").srcObject = s));
call.on("state", (s) => status(`call: ${s.state}`));
const click = (id, fn) => document.getElementById(id).addEventListener("click", () => fn().catch((e) => status(e.message)));
click("call", () => call.request("voice", { pageUrl: location.href }));
click("accept", () => call.accept());
click("video", () => call.startVideo());
click("novideo", () => call.stopVideo());
click("screen", () => call.startScreen());
click("mute", () => call.mute(!call.muted));
click("hold", () => call.hold(!(call.state.call && call.state.call.held)));
click("hangup", () => call.hangup());
status("connected");
