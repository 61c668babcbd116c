/**
 * The in-conversation call bar shared by the widget and the agent console: state line
 * ("Calling…", "Connecting…", "In call 00:42", "On hold"), incoming request (Accept / Decline),
 * our own pending request for video / screen share (with Cancel), a supervisor line (agents:
 * listening / whispering / barged in; customers: barged in only), controls (call, ask for video
 * or screen share, camera, screen, mute, hold for agents, hang up) and the remote audio / video
 * tiles. Built on SegueCall (call.js); text only.
 *
 *   const bar = new CallBar(call, { kind: "customer" | "agent", onError });
 *   container.append(bar.element);
 */
import { h } from "./dom.js";
import { supervisorOf } from "./call.js";

function clock(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const mm = String(Math.floor(s / 60) % 60).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mm}:${ss}` : `${mm}:${ss}`;
}

const MEDIA_LABEL = { voice: "a call", video: "video", screen: "screen sharing" };

/** What a supervisor is doing, as the agent on the call reads it. */
const SUPERVISOR_DOING = { listen: "is listening", whisper: "is whispering to you", barge: "barged in" };

export class CallBar {
  constructor(call, { kind, onError } = {}) {
    this.call = call;
    this.kind = kind;
    this.onError = onError ?? (() => {});
    this.connection = "new";
    this.build();
    this.off = [
      call.on("state", () => this.render()),
      // call.requested / accepted / declined come without a call.state: merge them into the state
      call.on("requested", ({ media, by }) => {
        if (media === "voice") this.merge({ state: "requested", requested_by: by, media_request: null });
        else this.merge({ media_request: { media, by } });
      }),
      call.on("declined", ({ media, by }) => {
        // the requester may withdraw their own video / screen request (call.decline as well)
        const requester = media === "voice" ? this.call.state.requested_by : this.call.state.media_request?.by;
        const withdrawn = requester?.kind === by?.kind;
        const what = MEDIA_LABEL[media] ?? "the request";
        this.merge(media === "voice" ? { state: "none", requested_by: null, media_request: null } : { media_request: null });
        const name = this.nameOf(by) || "They";
        if (by?.kind === this.kind) this.flash(withdrawn ? `You withdrew your request for ${what}.` : `Declined ${what}.`);
        else this.flash(withdrawn ? `${name} withdrew the request for ${what}.` : `${name} declined ${what}.`);
      }),
      call.on("accepted", (p) => {
        if (p.media !== "voice") this.merge({ media_request: null });
        this.onAccepted(p);
      }),
      call.on("connection", (s) => ((this.connection = s), this.render())),
      call.on("remotestream", (s) => (this.audio.srcObject = this.video.srcObject = s)),
      call.on("screenstream", (s) => (this.screen.srcObject = s)),
      call.on("supervisorstream", (s) => (this.supervisorAudio.srcObject = s)),
      call.on("ended", () => ((this.connection = "new"), this.flash("Call ended."), this.render())),
      call.on("error", (e) => {
        // a trickled candidate the server cannot use is not the person's problem: the others connect
        if (e?.event === "call.candidate") console.warn("Segue: call.candidate refused:", e.message);
        else this.onError(e);
      }),
    ];
    this.timer = setInterval(() => this.renderStatus(), 1000);
    this.render();
  }

  destroy() {
    for (const off of this.off) off();
    clearInterval(this.timer);
    this.element.remove();
  }

  build() {
    const btn = (cls, label, fn, extra = "") =>
      h("button", { type: "button", class: `segue-btn segue-btn--small ${extra} call-${cls}`, onclick: () => this.run(fn) }, label);
    this.status = h("span", { class: "segue-call-status", role: "status" });
    this.note = h("span", { class: "segue-call-note", hidden: true });
    this.incomingText = h("span", { class: "segue-call-incoming-text" });
    this.acceptBtn = btn("accept", "Accept", () => this.accept());
    this.declineBtn = btn("decline", "Decline", () => this.call.decline(), "segue-btn--ghost");
    this.incoming = h("div", { class: "segue-call-incoming", hidden: true }, this.incomingText, this.acceptBtn, this.declineBtn);
    // our own request for video / screen share, until the other side answers (Cancel withdraws it)
    this.outgoingText = h("span", { class: "segue-call-outgoing-text" });
    this.cancelRequestBtn = btn("cancel-request", "Cancel", () => this.call.decline("cancelled"), "segue-btn--ghost");
    this.outgoing = h("div", { class: "segue-call-outgoing", hidden: true }, this.outgoingText, this.cancelRequestBtn);
    this.supervisorLine = h("div", { class: "segue-call-supervisor", role: "status", hidden: true });
    this.startBtn = btn("start", "Call", () => this.call.request("voice", { pageUrl: this.kind === "customer" ? location.href : undefined }), "segue-btn--ghost");
    this.askVideoBtn = btn("ask-video", "Ask for video", () => this.call.request("video"), "segue-btn--ghost");
    this.askScreenBtn = btn("ask-screen", this.kind === "agent" ? "Ask to see their screen" : "Ask to see the agent's screen", () => this.call.request("screen"), "segue-btn--ghost");
    this.videoBtn = btn("video", "Camera on", () => (this.call.localVideo().camera ? this.call.stopVideo() : this.call.startVideo()), "segue-btn--ghost");
    this.screenBtn = btn("screen", "Share screen", () => (this.call.localVideo().screen ? this.call.stopScreen() : this.call.startScreen()), "segue-btn--ghost");
    this.muteBtn = btn("mute", "Mute", () => this.call.mute(!this.call.muted), "segue-btn--ghost");
    this.holdBtn = btn("hold", "Hold", () => this.call.hold(!this.call.state.call?.held), "segue-btn--ghost");
    this.hangupBtn = btn("hangup", "Hang up", () => this.call.hangup(), "segue-btn--danger");
    this.controls = h(
      "div",
      { class: "segue-call-controls" },
      this.startBtn,
      this.askVideoBtn,
      this.askScreenBtn,
      this.videoBtn,
      this.screenBtn,
      this.muteBtn,
      this.kind === "agent" && this.holdBtn,
      this.hangupBtn,
    );
    this.audio = h("audio", { class: "segue-call-audio", autoplay: true });
    // a supervisor's voice arrives on its own m-section (whisper / barge): played beside the call
    this.supervisorAudio = h("audio", { class: "segue-call-audio segue-call-audio--supervisor", autoplay: true });
    this.video = h("video", { class: "segue-call-video", autoplay: true, playsinline: true, muted: true });
    this.video.muted = true; // the sound plays through the audio element
    this.screen = h("video", { class: "segue-call-screen", autoplay: true, playsinline: true, muted: true });
    this.screen.muted = true;
    this.videoTile = h("figure", { class: "segue-call-tile", hidden: true }, this.video, h("figcaption", {}, "Camera"));
    this.screenTile = h("figure", { class: "segue-call-tile", hidden: true }, this.screen, h("figcaption", {}, "Screen"));
    this.tiles = h("div", { class: "segue-call-tiles" }, this.videoTile, this.screenTile);
    this.element = h(
      "div",
      { class: "segue-call", dataset: { state: "none" } },
      h("div", { class: "segue-call-head" }, this.status, this.note),
      this.supervisorLine,
      this.incoming,
      this.outgoing,
      this.controls,
      this.tiles,
      this.audio,
      this.supervisorAudio,
    );
  }

  merge(patch) {
    this.call.state = { conversation_id: this.call.conversationId, ...this.call.state, ...patch };
    this.call.emit("state", this.call.state); // re-renders this bar and whoever else follows the call
  }

  async run(fn) {
    try {
      await fn();
    } catch (error) {
      this.onError(error);
    }
    this.render();
  }

  /** Accept what the other side asked; video / screen requests turn ours on. */
  async accept() {
    const media = this.call.state.media_request?.media;
    await this.call.accept();
    if (media === "video" && !this.call.localVideo().camera) await this.call.startVideo();
    if (media === "screen" && !this.call.localVideo().screen) await this.call.startScreen();
  }

  /** The other side accepted our video request: turn our camera on too. */
  async onAccepted({ media, by }) {
    this.render();
    if (by?.kind === this.kind || media !== "video" || !this.call.pc || this.call.localVideo().camera) return;
    await this.run(() => this.call.startVideo());
  }

  flash(text) {
    this.note.textContent = text;
    this.note.hidden = false;
    clearTimeout(this.noteTimer);
    this.noteTimer = setTimeout(() => (this.note.hidden = true), 6000);
  }

  get otherRole() {
    return this.kind === "customer" ? "agent" : "customer";
  }

  get otherLabel() {
    return this.kind === "customer" ? "The agent" : "The customer";
  }

  /**
   * A person's name for the bar. For the customer, the conversation's summary has the name they
   * gave; the call event's author may only carry the connection's generic name.
   */
  nameOf(author) {
    if (author?.kind === "customer" && this.kind === "agent") {
      const summary = this.call.client.conversations?.get(this.call.conversationId)?.summary;
      if (summary?.customer?.name) return summary.customer.name;
    }
    return author?.name || null;
  }

  /**
   * The supervisor line. The agent sees every mode (they should know who hears them); the
   * customer only a barge, when the supervisor actually talks to them.
   */
  renderSupervisor(supervisor) {
    let text = "";
    if (supervisor && this.kind === "agent") {
      text = `Supervisor ${supervisor.name || supervisor.id || ""} ${SUPERVISOR_DOING[supervisor.mode] ?? supervisor.mode}`.replace(/\s+/g, " ");
    } else if (supervisor && supervisor.mode === "barge") {
      text = `${supervisor.name ? `${supervisor.name}, a supervisor,` : "A supervisor"} joined the call`;
    }
    this.supervisorLine.hidden = !text;
    this.supervisorLine.textContent = text;
    this.supervisorLine.dataset.mode = text ? supervisor.mode : "";
  }

  /** The state line. */
  statusText() {
    const s = this.call.state ?? {};
    if (s.state === "requested") {
      if (s.requested_by?.kind === this.kind) return this.kind === "customer" ? "Calling… waiting for an agent to answer" : "Calling the customer…";
      return "Incoming call";
    }
    if (s.state !== "active") return "";
    const c = s.call ?? {};
    if (c.held) return "On hold";
    if (!this.call.pc || this.connection !== "connected") return "Connecting…";
    const other = c.legs?.[this.otherRole];
    if (!other || (c.waiting_for ?? []).includes(this.otherRole)) {
      return this.kind === "customer" ? "On hold — connecting you to an agent…" : "Waiting for the customer to reconnect…";
    }
    const muted = this.call.muted ? " · muted" : "";
    return `In call ${clock(Date.now() - (c.started_ts ?? Date.now()))}${muted}`;
  }

  renderStatus() {
    this.status.textContent = this.statusText();
  }

  render() {
    const s = this.call.state ?? {};
    const active = s.state === "active";
    const c = s.call ?? {};
    this.element.dataset.state = s.state ?? "none";
    this.element.dataset.connection = this.connection;
    this.renderStatus();

    // incoming: a call from the other side, or their request for video / screen
    let incoming = null;
    if (s.state === "requested" && s.requested_by && s.requested_by.kind !== this.kind) incoming = "voice";
    else if (active && s.media_request && s.media_request.by?.kind !== this.kind) incoming = s.media_request.media;
    this.incoming.hidden = !incoming;
    if (incoming) {
      const who = this.nameOf(incoming === "voice" ? s.requested_by : s.media_request.by) || this.otherLabel;
      this.incomingText.textContent = {
        voice: `${who} is calling.`,
        video: `${who} asks for video: accept to turn your camera on.`,
        screen: `${who} asks you to share your screen.`,
      }[incoming] ?? `${who} asks for ${MEDIA_LABEL[incoming] ?? incoming}.`;
      this.incoming.dataset.media = incoming;
    }

    // outgoing: our request for video / screen share, waiting for the other side
    const outgoing = active && s.media_request && s.media_request.by?.kind === this.kind ? s.media_request.media : null;
    this.outgoing.hidden = !outgoing;
    if (outgoing) {
      const other = this.otherLabel.toLowerCase();
      this.outgoingText.textContent =
        outgoing === "screen" ? `Asked ${other} to share the screen — waiting for an answer…` : `Asked ${other} for video — waiting for an answer…`;
      this.outgoing.dataset.media = outgoing;
    }
    this.renderSupervisor(active ? supervisorOf(s) : null);

    const local = this.call.localVideo();
    this.startBtn.hidden = s.state === "active" || s.state === "requested";
    this.askVideoBtn.hidden = !active || !this.call.pc || Boolean(s.media_request) || Boolean(local.camera);
    this.askScreenBtn.hidden = !active || !this.call.pc || Boolean(s.media_request);
    for (const b of [this.videoBtn, this.screenBtn, this.muteBtn, this.holdBtn]) b.hidden = !active || !this.call.pc;
    this.hangupBtn.hidden = !(active || (s.state === "requested" && s.requested_by?.kind === this.kind));
    if (s.state === "requested" && s.requested_by?.kind === this.kind) this.hangupBtn.textContent = "Cancel";
    else this.hangupBtn.textContent = "Hang up";
    this.videoBtn.textContent = local.camera ? "Camera off" : "Camera on";
    this.videoBtn.classList.toggle("segue-btn--on", Boolean(local.camera));
    this.screenBtn.textContent = local.screen ? "Stop sharing" : "Share screen";
    this.screenBtn.classList.toggle("segue-btn--on", Boolean(local.screen));
    this.muteBtn.textContent = this.call.muted ? "Unmute" : "Mute";
    this.muteBtn.classList.toggle("segue-btn--on", this.call.muted);
    this.holdBtn.textContent = c.held ? "Resume" : "Hold";
    this.holdBtn.classList.toggle("segue-btn--on", Boolean(c.held));

    // remote tiles: the other side's camera / screen
    const sending = c.legs?.[this.otherRole]?.sending ?? {};
    const theirs = (slot) => active && (Array.isArray(sending) ? sending.includes(slot) : Boolean(sending[slot]));
    this.videoTile.hidden = !theirs("video");
    this.screenTile.hidden = !theirs("screen");
  }
}

export { clock };
