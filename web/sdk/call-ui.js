/**
 * The in-conversation call bar shared by the widget and the agent console: state line
 * ("Calling…", "Connecting…", "In call 00:42", "On hold"), incoming request (Accept / Decline),
 * our own pending request for video / screen share (with Cancel), a supervisor line (agents:
 * listening / whispering / barged in; customers: barged in only), controls (call, ask for video
 * or screen share, camera, screen, mute, hold for agents, hang up) and the remote audio / video
 * tiles, and a self-view of one's own camera. Built on SegueCall (call.js); text only, every
 * word from the translator `t` (i18n.js; default English).
 *
 * The customer gets one "Video" toggle (camera on, and the agent is asked for theirs) instead of
 * the agent's separate "Ask for video" and "Camera on/off".
 *
 *   const bar = new CallBar(call, { kind: "customer" | "agent", onError, t });
 *   container.append(bar.element);
 */
import { h } from "./dom.js";
import { english } from "./i18n.js";
import { personName } from "./format.js";
import { supervisorOf } from "./call.js";

function clock(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const mm = String(Math.floor(s / 60) % 60).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return s >= 3600 ? `${Math.floor(s / 3600)}:${mm}:${ss}` : `${mm}:${ss}`;
}

const MEDIA = ["voice", "video", "screen"];

export class CallBar {
  constructor(call, { kind, onError, t = english } = {}) {
    this.call = call;
    this.kind = kind;
    this.t = t;
    this.onError = onError ?? (() => {});
    // a bar built for a running call (a new language, a re-attached page) starts from its connection's state
    this.connection = call.pc?.connectionState ?? "new";
    this.build();
    this.off = [
      call.on("state", () => this.render()),
      // call.requested / accepted / declined come without a call.state: merge them into the state
      call.on("requested", ({ media, by }) => {
        // "video" while no call runs is a call with cameras on (call-from-web with video)
        if (this.startsCall(media)) this.merge({ state: "requested", requested_by: by, media_request: null, video: media === "video" });
        else this.merge({ media_request: { media, by } });
      }),
      call.on("declined", ({ media, by }) => {
        // the requester may withdraw their own video / screen request (call.decline as well)
        const whole = media === "voice" || (media === "video" && this.call.state.state === "requested");
        const requester = whole ? this.call.state.requested_by : this.call.state.media_request?.by;
        const withdrawn = requester?.kind === by?.kind;
        const what = this.what(whole ? "voice" : media);
        this.merge(whole ? { state: "none", requested_by: null, media_request: null } : { media_request: null });
        const name = this.nameOf(by) || t("callbar.they");
        if (by?.kind === this.kind) this.flash(t(withdrawn ? "callbar.you_withdrew" : "callbar.you_declined", { what }));
        else this.flash(t(withdrawn ? "callbar.they_withdrew" : "callbar.they_declined", { name, what }));
      }),
      call.on("accepted", (p) => {
        if (p.media !== "voice") this.merge({ media_request: null });
        this.onAccepted(p);
      }),
      call.on("connection", (s) => ((this.connection = s), this.render())),
      call.on("remotestream", (s) => (this.audio.srcObject = this.video.srcObject = s)),
      call.on("screenstream", (s) => (this.screen.srcObject = s)),
      call.on("supervisorstream", (s) => (this.supervisorAudio.srcObject = s)),
      call.on("ended", () => ((this.connection = "new"), this.flash(t("callbar.ended")), this.render())),
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

  /** "video" → "video" / "视频请求": what was asked for, as a noun for the flash lines. */
  what(media) {
    return this.t(`callbar.what.${MEDIA.includes(media) ? media : "other"}`);
  }

  build() {
    const t = this.t;
    const btn = (cls, label, fn, extra = "") =>
      h("button", { type: "button", class: `segue-btn segue-btn--small ${extra} call-${cls}`, onclick: () => this.run(fn) }, label);
    this.status = h("span", { class: "segue-call-status", role: "status" });
    this.note = h("span", { class: "segue-call-note", hidden: true });
    this.incomingText = h("span", { class: "segue-call-incoming-text" });
    this.acceptBtn = btn("accept", t("callbar.accept"), () => this.accept());
    this.declineBtn = btn("decline", t("callbar.decline"), () => this.call.decline(), "segue-btn--ghost");
    this.incoming = h("div", { class: "segue-call-incoming", hidden: true }, this.incomingText, this.acceptBtn, this.declineBtn);
    // our own request for video / screen share, until the other side answers (Cancel withdraws it)
    this.outgoingText = h("span", { class: "segue-call-outgoing-text" });
    this.cancelRequestBtn = btn("cancel-request", t("callbar.cancel"), () => this.call.decline("cancelled"), "segue-btn--ghost");
    this.outgoing = h("div", { class: "segue-call-outgoing", hidden: true }, this.outgoingText, this.cancelRequestBtn);
    this.supervisorLine = h("div", { class: "segue-call-supervisor", role: "status", hidden: true });
    this.startBtn = btn("start", t("callbar.call"), () => this.call.request("voice", { pageUrl: this.kind === "customer" ? location.href : undefined }), "segue-btn--ghost");
    this.askVideoBtn = btn("ask-video", t("callbar.ask_video"), () => this.call.request("video"), "segue-btn--ghost");
    this.askScreenBtn = btn("ask-screen", t(`callbar.ask_screen.${this.kind === "agent" ? "agent" : "customer"}`), () => this.call.request("screen"), "segue-btn--ghost");
    // agents: "Camera on/off" beside "Ask for video"; customers: one "Video" toggle (toggleVideo)
    this.videoBtn = btn("video", t("callbar.camera_on"), () => (this.kind === "customer" ? this.toggleVideo() : this.call.localVideo().camera ? this.call.stopVideo() : this.call.startVideo()), "segue-btn--ghost");
    this.screenBtn = btn("screen", t("callbar.share_screen"), () => (this.call.localVideo().screen ? this.call.stopScreen() : this.call.startScreen()), "segue-btn--ghost");
    this.muteBtn = btn("mute", t("callbar.mute"), () => this.call.mute(!this.call.muted), "segue-btn--ghost");
    this.holdBtn = btn("hold", t("callbar.hold"), () => this.call.hold(!this.call.state.call?.held), "segue-btn--ghost");
    this.hangupBtn = btn("hangup", t("callbar.hangup"), () => this.call.hangup(), "segue-btn--danger");
    this.controls = h(
      "div",
      { class: "segue-call-controls" },
      this.startBtn,
      this.kind !== "customer" && this.askVideoBtn,
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
    this.videoTile = h("figure", { class: "segue-call-tile", hidden: true }, this.video, h("figcaption", {}, t("callbar.tile.camera")));
    this.screenTile = h("figure", { class: "segue-call-tile", hidden: true }, this.screen, h("figcaption", {}, t("callbar.tile.screen")));
    // one's own camera, so a person sees what the other side sees (first: the remote tiles keep their order)
    this.selfVideo = h("video", { class: "segue-call-self-video", autoplay: true, playsinline: true, muted: true });
    this.selfVideo.muted = true;
    this.selfTile = h("figure", { class: "segue-call-tile segue-call-tile--self", hidden: true }, this.selfVideo, h("figcaption", {}, t("callbar.tile.self")));
    this.tiles = h("div", { class: "segue-call-tiles" }, this.selfTile, this.videoTile, this.screenTile);
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

  /** Whether a request for `media` starts a call (rather than asking for more during one). */
  startsCall(media) {
    const state = this.call.state?.state ?? "none";
    return media === "voice" || (media === "video" && state !== "active");
  }

  /**
   * The customer's "Video" toggle: off → our camera goes on and the agent is asked for theirs
   * (unless they already send video or a request is pending); on → our camera goes off and our
   * pending video request, if any, is withdrawn.
   */
  async toggleVideo() {
    const s = this.call.state ?? {};
    if (this.call.localVideo().camera) {
      const ours = s.media_request?.media === "video" && s.media_request.by?.kind === this.kind;
      if (ours) await this.call.decline("cancelled");
      await this.call.stopVideo();
      return;
    }
    await this.call.startVideo();
    const theirs = s.call?.legs?.[this.otherRole]?.sending ?? {};
    const theyShowVideo = Array.isArray(theirs) ? theirs.includes("video") : Boolean(theirs.video);
    if (!this.call.state?.media_request && !theyShowVideo) await this.call.request("video");
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
    return this.t(this.kind === "customer" ? "callbar.the_agent" : "callbar.the_customer");
  }

  /**
   * A person's name for the bar. For the customer, the conversation's summary has the name they
   * gave; the call event's author may only carry the connection's generic name.
   */
  nameOf(author) {
    if (author?.kind === "customer" && this.kind === "agent") {
      const summary = this.call.client.conversations?.get(this.call.conversationId)?.summary;
      if (summary?.customer?.name) return personName(summary.customer.name, this.t);
    }
    return personName(author?.name, this.t) || null;
  }

  /**
   * The supervisor line. The agent sees every mode (they should know who hears them); the
   * customer only a barge, when the supervisor actually talks to them.
   */
  renderSupervisor(supervisor) {
    const t = this.t;
    let text = "";
    if (supervisor && this.kind === "agent") {
      const mode = ["listen", "whisper", "barge"].includes(supervisor.mode) ? supervisor.mode : "other";
      text = t(`callbar.supervisor.${mode}`, { name: supervisor.name || supervisor.id || "", mode: supervisor.mode }).replace(/\s+/g, " ").trim();
    } else if (supervisor && supervisor.mode === "barge") {
      text = supervisor.name ? t("callbar.supervisor.customer_named", { name: supervisor.name }) : t("callbar.supervisor.customer");
    }
    this.supervisorLine.hidden = !text;
    this.supervisorLine.textContent = text;
    this.supervisorLine.dataset.mode = text ? supervisor.mode : "";
  }

  /** The state line. */
  statusText() {
    const t = this.t;
    const s = this.call.state ?? {};
    const side = this.kind === "customer" ? "customer" : "agent";
    if (s.state === "requested") {
      if (s.requested_by?.kind === this.kind) return t(`callbar.status.calling.${side}`);
      return t("callbar.status.incoming");
    }
    if (s.state !== "active") return "";
    const c = s.call ?? {};
    if (c.held) return t("callbar.status.on_hold");
    if (!this.call.pc || this.connection !== "connected") return t("callbar.status.connecting");
    const other = c.legs?.[this.otherRole];
    if (!other || (c.waiting_for ?? []).includes(this.otherRole)) return t(`callbar.status.waiting.${side}`);
    const time = clock(Date.now() - (c.started_ts ?? Date.now()));
    return t(this.call.muted ? "callbar.status.in_call_muted" : "callbar.status.in_call", { time });
  }

  renderStatus() {
    this.status.textContent = this.statusText();
  }

  render() {
    const t = this.t;
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
      const key = incoming === "voice" && s.video ? "voice_video" : MEDIA.includes(incoming) ? incoming : "other";
      this.incomingText.textContent = t(`callbar.incoming.${key}`, { who, what: this.what(incoming) });
      this.incoming.dataset.media = incoming;
    }

    // outgoing: our request for video / screen share, waiting for the other side
    const outgoing = active && s.media_request && s.media_request.by?.kind === this.kind ? s.media_request.media : null;
    this.outgoing.hidden = !outgoing;
    if (outgoing) {
      const side = this.kind === "customer" ? "customer" : "agent";
      this.outgoingText.textContent = t(`callbar.outgoing.${outgoing === "screen" ? "screen" : "video"}.${side}`);
      this.outgoing.dataset.media = outgoing;
    }
    this.renderSupervisor(active ? supervisorOf(s) : null);

    const local = this.call.localVideo();
    this.startBtn.hidden = s.state === "active" || s.state === "requested";
    this.askVideoBtn.hidden = !active || !this.call.pc || Boolean(s.media_request) || Boolean(local.camera);
    this.askScreenBtn.hidden = !active || !this.call.pc || Boolean(s.media_request);
    for (const b of [this.videoBtn, this.screenBtn, this.muteBtn, this.holdBtn]) b.hidden = !active || !this.call.pc;
    this.hangupBtn.hidden = !(active || (s.state === "requested" && s.requested_by?.kind === this.kind));
    if (s.state === "requested" && s.requested_by?.kind === this.kind) this.hangupBtn.textContent = t("callbar.cancel");
    else this.hangupBtn.textContent = t("callbar.hangup");
    if (this.kind === "customer") {
      this.videoBtn.textContent = t(local.camera ? "callbar.video_stop" : "callbar.video");
      this.videoBtn.title = t(local.camera ? "callbar.video_stop.title" : "callbar.video.title");
    } else {
      this.videoBtn.textContent = t(local.camera ? "callbar.camera_off" : "callbar.camera_on");
    }
    this.videoBtn.setAttribute("aria-pressed", String(Boolean(local.camera)));
    this.videoBtn.classList.toggle("segue-btn--on", Boolean(local.camera));
    this.screenBtn.textContent = t(local.screen ? "callbar.stop_sharing" : "callbar.share_screen");
    this.screenBtn.classList.toggle("segue-btn--on", Boolean(local.screen));
    this.muteBtn.textContent = t(this.call.muted ? "callbar.unmute" : "callbar.mute");
    this.muteBtn.classList.toggle("segue-btn--on", this.call.muted);
    this.holdBtn.textContent = t(c.held ? "callbar.resume" : "callbar.hold");
    this.holdBtn.classList.toggle("segue-btn--on", Boolean(c.held));

    // remote tiles: the other side's camera / screen
    const sending = c.legs?.[this.otherRole]?.sending ?? {};
    const theirs = (slot) => active && (Array.isArray(sending) ? sending.includes(slot) : Boolean(sending[slot]));
    this.videoTile.hidden = !theirs("video");
    this.screenTile.hidden = !theirs("screen");
    // our own camera (self-view)
    const camera = active ? local.camera : null;
    if (camera && this.selfVideo.srcObject?.getVideoTracks()[0] !== camera) this.selfVideo.srcObject = new MediaStream([camera]);
    if (!camera && this.selfVideo.srcObject) this.selfVideo.srcObject = null;
    this.selfTile.hidden = !camera;
  }
}

export { clock };
