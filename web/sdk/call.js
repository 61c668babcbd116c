/**
 * Segue calls — voice, video and screen share inside a conversation, on ONE RTCPeerConnection.
 *
 *   import { SegueCall } from "/sdk/call.js";
 *   const call = new SegueCall(client, conversationId);   // client: SegueCustomer / SegueAgent
 *   call.on("requested", ({media, by}) => ...);            // the other side asks (voice/video/screen)
 *   call.on("state", (state) => ...);                       // server's call.state
 *   call.on("remotestream", (stream) => audioEl.srcObject = videoEl.srcObject = stream);
 *   call.on("screenstream", (stream) => screenEl.srcObject = stream);
 *   call.on("supervisorstream", (stream) => supervisorAudioEl.srcObject = stream);  // whisper / barge
 *   call.on("ended", ({reason, durations}) => ...);
 *   await call.request("voice", { pageUrl: location.href });   // or await call.accept()
 *   // once accepted (event "accepted", or accept() resolved), media starts by itself:
 *   await call.startVideo(); await call.stopVideo();
 *   await call.startScreen(); await call.stopScreen();
 *   await call.mute(true); await call.hold(true) (agents); await call.hangup();
 *
 * Supervisors monitor a call with `SegueMonitor` (below; or `agent.monitorCall(id, mode)`): the
 * same connection and negotiation code, with the supervisor's own m-sections.
 *
 * Rules (docs/calls.md): the browser is always the offerer and the server always answers
 * (aiortc cannot re-offer safely); when the server needs a change it pushes `call.renegotiate`
 * and we offer again. That is the perfect-negotiation pattern with the browser as the only
 * "impolite" side: there is never glare, so no rollback is ever needed. Transceivers are created
 * in a fixed order — microphone (audio), camera (video), screen (video), supervisor (audio,
 * receive only) — the server maps media by that order. A connection that fails, or stays
 * `disconnected` for STALL_REPLACE_MS, is replaced by a new one offered on the same socket (aiortc
 * has no ICE restart); the server re-attaches it to the running call within
 * media.reconnect_grace_s (event `replacing` with the old connection's state).
 */
import { Emitter } from "./segue.js";

const MEDIA = ["voice", "video", "screen"];

/**
 * How long a connection may stay `disconnected` before it is replaced. The browser reports
 * `disconnected` after a few seconds without ICE consent responses and `failed` only after ~30 s;
 * aiortc (the server) cannot restart ICE, so a new connection re-attached to the running call is
 * the recovery, and waiting for `failed` would leave the customer in silence for half a minute.
 * Short blips (the connection comes back by itself) stay below this.
 */
export const STALL_REPLACE_MS = 3000;

export class SegueCall extends Emitter {
  /**
   * @param client  an object with `socket` (Socket.IO socket, connected) and
   *                `request(event, payload) -> Promise<result>` (SegueCustomer / SegueAgent do)
   * @param conversationId  the conversation this call belongs to
   * @param options {audio?: MediaTrackConstraints|true, autoStart?: true, autoResume?: true,
   *                 video?: boolean (start the camera with the connection; default: when the call
   *                 was started as a video call, `state.video`)}
   */
  constructor(client, conversationId, options = {}) {
    super();
    this.client = client;
    this.conversationId = conversationId;
    this.options = { audio: true, autoStart: true, autoResume: true, ...options };
    this.pc = null;
    this.state = { state: "none" };
    this.iceServers = [];
    this.localStream = null;
    this.remoteStream = new MediaStream();
    this.screenStream = new MediaStream();
    /** A supervisor's voice (whisper to the agent, barge to both); silent otherwise. */
    this.supervisorStream = new MediaStream();
    this.muted = false;
    this._tx = null; // transceivers by slot: {audio, camera, screen, supervisor}
    this._negotiating = false;
    this._again = false;
    this._answered = false;
    this._pendingCandidates = [];
    this._listeners = [];
    this._listen();
  }

  // --- requests ----------------------------------------------------------------------------

  /**
   * Ask for a call ("voice"; "video", or `{video: true}`, for a call with cameras on from the
   * start) or, during a call, for "video" / "screen".
   */
  async request(media = "voice", { pageUrl, video = false } = {}) {
    if (!MEDIA.includes(media)) throw new Error(`media must be one of ${MEDIA.join(", ")}`);
    if (video && media === "voice") media = "video";
    const payload = { conversation_id: this.conversationId, media };
    if (pageUrl) payload.page_url = pageUrl;
    const result = await this.client.request("call.request", payload);
    this._setState(result.call);
    return result;
  }

  /** Accept what the other side requested; for a voice call this starts the media. */
  async accept() {
    const result = await this.client.request("call.accept", { conversation_id: this.conversationId });
    if (result.ice_servers) this.iceServers = result.ice_servers;
    this._setState(result.call);
    if (!this.pc && this.options.autoStart) await this.start();
    return result;
  }

  async decline(reason) {
    const payload = { conversation_id: this.conversationId };
    if (reason) payload.reason = reason;
    return this.client.request("call.decline", payload);
  }

  /** Ask the server for the call's state; with autoResume, a running call gets a new connection. */
  async refresh() {
    const result = await this.client.request("call.state", { conversation_id: this.conversationId });
    this._setState(result.call);
    if (result.call.state === "active" && !this.pc && this.options.autoResume) await this.start();
    return result.call;
  }

  // --- media -------------------------------------------------------------------------------

  /** Open the connection (microphone on, camera and screen ready to receive) and offer. */
  start() {
    if (this.pc) return Promise.resolve();
    if (!this._starting) this._starting = this._start().finally(() => (this._starting = null));
    return this._starting;
  }

  async _start() {
    if (!this.iceServers.length) {
      try {
        const config = await this.client.request("call.config", {});
        this.iceServers = config.ice_servers || [];
      } catch (_err) {
        this.iceServers = [];
      }
    }
    const pc = new RTCPeerConnection({
      iceServers: this.iceServers,
      bundlePolicy: "max-bundle",
      iceTransportPolicy: this.options.iceTransportPolicy || "all",
    });
    this.pc = pc;
    this._answered = false;
    try {
      await this._addTransceivers(pc);
    } catch (err) {
      if (this.pc === pc) this._teardown({ keepState: true }); // e.g. no microphone permission
      throw err;
    }
    pc.onicecandidate = ({ candidate }) => this._candidate(candidate);
    pc.onnegotiationneeded = () => this.negotiate().catch(() => {}); // errors are emitted
    pc.onconnectionstatechange = () => {
      this.emit("connection", pc.connectionState);
      if (this.pc !== pc) return;
      clearTimeout(this._stallTimer);
      // no ICE restart on the server: replace the connection, the call re-attaches it
      const replace = () => {
        if (this.pc === pc && this._shouldReplace()) this._replace().catch((err) => this.emit("error", err));
      };
      if (pc.connectionState === "failed") replace();
      else if (pc.connectionState === "disconnected") {
        this._stallTimer = setTimeout(() => {
          if (pc.connectionState === "disconnected") replace();
        }, STALL_REPLACE_MS);
      }
    };
    await this.negotiate();
  }

  /**
   * The m-sections of a participant's connection, in the order the server maps them:
   * microphone (sendrecv: it also carries the other side's voice), camera and screen (recvonly
   * until we send ours: the other side's video can arrive without a renegotiation), and a
   * recvonly audio for a supervisor who whispers (to the agent) or barges in (to both).
   */
  async _addTransceivers(pc) {
    this.localStream = await navigator.mediaDevices.getUserMedia({ audio: this.options.audio, video: false });
    const mic = this.localStream.getAudioTracks()[0];
    mic.enabled = !this.muted;
    // a video call: the camera goes on with the connection (without a camera, the call goes on with voice)
    let camera = null;
    if (this.options.video ?? Boolean(this.state?.video)) {
      try {
        camera = (await navigator.mediaDevices.getUserMedia({ video: true })).getVideoTracks()[0] ?? null;
      } catch (err) {
        this.emit("error", err);
      }
    }
    this._tx = {
      audio: pc.addTransceiver(mic, { direction: "sendrecv", streams: [this.localStream] }),
      camera: camera ? pc.addTransceiver(camera, { direction: "sendrecv" }) : pc.addTransceiver("video", { direction: "recvonly" }),
      screen: pc.addTransceiver("video", { direction: "recvonly" }),
      supervisor: pc.addTransceiver("audio", { direction: "recvonly" }),
    };
    this.remoteStream = new MediaStream([this._tx.audio.receiver.track, this._tx.camera.receiver.track]);
    this.screenStream = new MediaStream([this._tx.screen.receiver.track]);
    this.supervisorStream = new MediaStream([this._tx.supervisor.receiver.track]);
    this.emit("remotestream", this.remoteStream);
    this.emit("screenstream", this.screenStream);
    this.emit("supervisorstream", this.supervisorStream);
    if (camera) camera.addEventListener("ended", () => this._stopVideo("camera"));
  }

  /** Whether a failed connection is replaced by a new one (a call that is still on). */
  _shouldReplace() {
    return this.state.state === "active";
  }

  /** Offer and apply the answer; serialised (a request arriving meanwhile runs once after). */
  async negotiate() {
    const pc = this.pc;
    if (!pc) return;
    if (this._negotiating) {
      this._again = true;
      return this._done;
    }
    this._negotiating = true;
    let finish;
    this._done = new Promise((resolve) => (finish = resolve));
    try {
      do {
        this._again = false;
        await pc.setLocalDescription(); // implicit createOffer (browser is always the offerer)
        const result = await this.client.request("call.offer", {
          conversation_id: this.conversationId,
          sdp: pc.localDescription.sdp,
        });
        if (this.pc !== pc) return;
        await pc.setRemoteDescription({ type: "answer", sdp: result.sdp });
        if (!this._answered) {
          this._answered = true;
          for (const c of this._pendingCandidates.splice(0)) await this._sendCandidate(c);
        }
      } while (this._again && pc.signalingState === "stable");
    } catch (err) {
      this.emit("error", err);
      throw err;
    } finally {
      this._negotiating = false;
      finish();
    }
  }

  async startVideo() {
    await this._startVideo("camera", () => navigator.mediaDevices.getUserMedia({ video: true }));
  }

  async stopVideo() {
    await this._stopVideo("camera");
  }

  async startScreen() {
    await this._startVideo("screen", () => navigator.mediaDevices.getDisplayMedia({ video: true }));
  }

  async stopScreen() {
    await this._stopVideo("screen");
  }

  /** Local video tracks being sent: {camera?: MediaStreamTrack, screen?: MediaStreamTrack}. */
  localVideo() {
    return { camera: this._tx?.camera?.sender.track || null, screen: this._tx?.screen?.sender.track || null };
  }

  /** Mute the microphone (locally, and the server stops forwarding it). */
  async mute(muted = true) {
    this.muted = muted;
    const mic = this.localStream?.getAudioTracks()[0];
    if (mic) mic.enabled = !muted;
    if (this.state.state === "active") {
      const result = await this.client.request("call.mute", { conversation_id: this.conversationId, muted });
      this._setState(result.call);
    }
  }

  /** Agents: put the customer on hold (they hear the hold tone) or take them off. */
  async hold(held = true) {
    const result = await this.client.request("call.hold", { conversation_id: this.conversationId, held });
    this._setState(result.call);
    return result;
  }

  /** End the call for everyone; the chat goes on. */
  async hangup() {
    try {
      return await this.client.request("call.hangup", { conversation_id: this.conversationId });
    } finally {
      this._teardown();
    }
  }

  /** Inbound/outbound RTP counters from getStats: {audio: {in, out}, video: {in, out}} in bytes. */
  async bytes() {
    const out = { audio: { in: 0, out: 0 }, video: { in: 0, out: 0 } };
    if (!this.pc) return out;
    const stats = await this.pc.getStats();
    stats.forEach((s) => {
      if (s.type === "inbound-rtp" && out[s.kind]) out[s.kind].in += s.bytesReceived || 0;
      if (s.type === "outbound-rtp" && out[s.kind]) out[s.kind].out += s.bytesSent || 0;
    });
    return out;
  }

  /** Stop listening on the socket and close the connection (does not end the call). */
  close() {
    for (const [event, handler] of this._listeners) this.client.socket?.off(event, handler);
    this._listeners = [];
    this._teardown();
  }

  // --- internals ---------------------------------------------------------------------------

  async _startVideo(which, getMedia) {
    if (!this.pc) throw new Error("start the call first");
    const tx = this._tx[which];
    if (!tx) throw new Error(`this connection has no ${which} to send`);
    const stream = await getMedia();
    const track = stream.getVideoTracks()[0];
    await tx.sender.replaceTrack(track);
    tx.direction = "sendrecv"; // fires negotiationneeded -> negotiate(); audio keeps flowing
    track.addEventListener("ended", () => this._stopVideo(which));
    await this.negotiate();
  }

  async _stopVideo(which) {
    const tx = this._tx?.[which];
    if (!tx || !tx.sender.track) return;
    const track = tx.sender.track;
    await tx.sender.replaceTrack(null);
    track.stop();
    tx.direction = "recvonly";
    await this.negotiate();
  }

  _candidate(candidate) {
    const init = candidate ? candidate.toJSON() : null;
    if (init && init.candidate === "") return; // end-of-candidates marker per m-line
    if (!this._answered) this._pendingCandidates.push(init);
    else this._sendCandidate(init);
  }

  async _sendCandidate(init) {
    try {
      await this.client.request("call.candidate", { conversation_id: this.conversationId, candidate: init });
    } catch (err) {
      this.emit("error", err);
    }
  }

  async _replace() {
    this.emit("replacing", this.pc ? this.pc.connectionState : null);
    const videos = this.localVideo();
    this._teardown({ keepState: true });
    await this._start();
    const opened = this._tx?.camera?.sender.track; // a video call's new connection opens the camera itself
    if (videos.camera && videos.camera.readyState === "live" && this._tx?.camera) {
      if (opened) {
        if (opened !== videos.camera) videos.camera.stop();
      } else {
        await this._tx.camera.sender.replaceTrack(videos.camera);
        this._tx.camera.direction = "sendrecv";
        await this.negotiate();
      }
    }
  }

  /** The leg this call holds on the server ("customer", "agent", "consult"; a monitor: "supervisor"). */
  _legRole(call) {
    if (this.client.namespace === "/customer") return "customer";
    return call?.legs?.consult?.participant && call.legs.consult.participant === this.client.agent?.id ? "consult" : "agent";
  }

  /** Replace our connection if the server's call waits for our leg (see the reconnect listener). */
  async _checkLeg() {
    if (!this.pc || !this._shouldReplace()) return;
    const result = await this.client.request("call.state", { conversation_id: this.conversationId });
    const call = result?.call?.call;
    if (!call || !(call.waiting_for || []).includes(this._legRole(call))) return;
    if (this.pc && this._shouldReplace()) await this._replace();
  }

  _teardown({ keepState = false } = {}) {
    clearTimeout(this._stallTimer);
    // the call is over: camera and screen stop too (a replaced connection keeps them for the new one)
    const videos = keepState ? [] : [this._tx?.camera, this._tx?.screen].map((tx) => tx?.sender.track).filter(Boolean);
    if (this.pc) {
      this.pc.onnegotiationneeded = null;
      this.pc.onicecandidate = null;
      this.pc.onconnectionstatechange = null;
      this.pc.close();
    }
    this.pc = null;
    this._tx = null;
    this._answered = false;
    this._pendingCandidates = [];
    if (this.localStream) this.localStream.getTracks().forEach((t) => t.stop());
    for (const track of videos) track.stop();
    this.localStream = null;
    if (!keepState) this.state = { conversation_id: this.conversationId, state: "none" };
  }

  _setState(state) {
    if (!state) return;
    this.state = state;
    this.emit("state", state);
  }

  _on(event, handler) {
    const wrapped = (payload) => {
      if (payload && payload.conversation_id === this.conversationId) handler(payload);
    };
    this.client.socket.on(event, wrapped);
    this._listeners.push([event, wrapped]);
  }

  _listen() {
    if (!this.client.socket) throw new Error("connect the client before creating a SegueCall");
    this._on("call.requested", (p) => this.emit("requested", p));
    this._on("call.declined", (p) => this.emit("declined", p));
    this._on("call.accepted", async (p) => {
      this.emit("accepted", p);
      // a call starts (voice, or a video call); later video / screen accepts reuse the connection
      if ((p.media === "voice" || (p.media === "video" && this.state?.video)) && !this.pc && this.options.autoStart) {
        try {
          await this.start();
        } catch (err) {
          this.emit("error", err);
        }
      }
    });
    this._on("call.state", (p) => this._setState(p));
    this._on("call.renegotiate", () => this.negotiate());
    // after a reconnect: if the server is waiting for our leg (the node holding the call died
    // while this socket was away, so its call.migrated never reached us), offer a new connection
    const onReconnect = () => setTimeout(() => this._checkLeg().catch(() => {}), 300);
    this.client.socket.on("connect", onReconnect);
    this._listeners.push(["connect", onReconnect]);
    // the server holding the call stopped; another took it over with no legs yet: offer a new
    // connection now instead of waiting for this one to fail (docs/calls.md "When a server dies")
    this._on("call.migrated", (p) => {
      this.emit("migrated", p);
      if (this.pc && this._shouldReplace()) this._replace().catch((err) => this.emit("error", err));
      else if (!this.pc && this.options.autoResume && this.state.state === "active") this.start().catch((err) => this.emit("error", err));
    });
    this._on("call.ended", (p) => {
      this._teardown();
      this.emit("ended", p);
    });
  }
}

/** Monitoring modes: listen (hear both, say nothing), whisper (the agent hears you), barge (both do). */
export const MONITOR_MODES = ["listen", "whisper", "barge"];

/**
 * A supervisor's leg on someone else's call: hears the customer and the agent, and — in
 * whisper or barge mode — talks to the agent or to both.
 *
 *   const monitor = await agent.monitorCall(conversationId, "listen");   // or new SegueMonitor(agent, id).setMode("listen")
 *   monitor.on("customerstream", (s) => customerAudio.srcObject = s);
 *   monitor.on("agentstream", (s) => agentAudio.srcObject = s);
 *   await monitor.setMode("whisper");   // no renegotiation: the server rewires, we send our microphone
 *   await monitor.stop();               // only our leg goes; the call goes on
 *
 * Why a subclass of SegueCall: one connection, one negotiation loop, one candidate queue and one
 * replace-on-failure path serve every leg. Only the m-sections differ: the first audio is
 * sendrecv (our microphone; the customer's voice comes back on it), the second is recvonly
 * (the agent's voice). In listen mode the first one has no track: nothing of ours is sent, and
 * the microphone is not even opened until we whisper or barge.
 */
export class SegueMonitor extends SegueCall {
  _legRole() {
    return "supervisor";
  }

  constructor(client, conversationId, options = {}) {
    super(client, conversationId, { ...options, autoStart: false, autoResume: false });
    /** The current mode ("listen" / "whisper" / "barge"), null when not monitoring. */
    this.mode = null;
    /** The customer's voice. */
    this.customerStream = new MediaStream();
    /** The agent's voice. */
    this.agentStream = new MediaStream();
    this._modeChange = Promise.resolve();
    this.on("ended", () => this._stopped());
    // the server let our seat go (our page's connection failed, another tab took over...)
    this.on("state", (state) => {
      const me = this.client.agent?.id;
      if (this.mode && me && state?.state === "active" && supervisorOf(state)?.id !== me) this._stopped();
    });
  }

  /**
   * Start monitoring in `mode`, or switch to it. Switching never renegotiates: the server
   * rewires who hears us, and we attach (whisper / barge) or drop (listen) our microphone.
   * Calls are serialised: a second setMode runs after the first one finished.
   */
  setMode(mode) {
    if (!MONITOR_MODES.includes(mode)) return Promise.reject(new Error(`mode must be one of ${MONITOR_MODES.join(", ")}`));
    const run = this._modeChange.catch(() => {}).then(() => this._switch(mode));
    this._modeChange = run;
    return run;
  }

  /** Whether this mode sends our microphone. */
  static talks(mode) {
    return mode === "whisper" || mode === "barge";
  }

  async _switch(mode) {
    // Listen: stop sending before the server switches. Whisper / barge: open the microphone first
    // (a refused permission leaves the server in the previous mode).
    let mic = null;
    if (SegueMonitor.talks(mode)) mic = await this._microphone();
    else await this._sendMicrophone(null);
    let result;
    try {
      result = await this.client.request("call.monitor", { conversation_id: this.conversationId, mode });
    } catch (err) {
      if (mic && !SegueMonitor.talks(this.mode)) this._releaseMicrophone();
      throw err;
    }
    if (result.ice_servers) this.iceServers = result.ice_servers;
    this.mode = mode;
    this._setState(result.call);
    if (!this.pc) await this.start(); // _addTransceivers attaches the microphone for this mode
    else await this._sendMicrophone(mic);
    this.emit("mode", mode);
    return result;
  }

  /**
   * After the socket reconnected: the server let our seat go with the old socket, so take it
   * again in the same mode on a new connection (SegueAgent does this on every reconnect).
   */
  resume() {
    const run = this._modeChange.catch(() => {}).then(async () => {
      const mode = this.mode;
      if (!mode) return null;
      this._teardown({ keepState: true });
      this.mode = null;
      try {
        return await this._switch(mode);
      } catch (err) {
        this.emit("mode", null); // could not take it up again (the call ended meanwhile...)
        throw err;
      }
    });
    this._modeChange = run;
    return run;
  }

  /** Stop monitoring: only our leg is dropped, the call goes on. */
  stop() {
    const run = this._modeChange.catch(() => {}).then(() => this._stop());
    this._modeChange = run;
    return run;
  }

  async _stop() {
    try {
      if (this.mode) await this.client.request("call.monitor_stop", { conversation_id: this.conversationId });
    } finally {
      this._stopped();
    }
  }

  /** Our leg is gone (stopped, or the call ended): close the connection, keep following the state. */
  _stopped() {
    const was = this.mode;
    this.mode = null;
    this._teardown({ keepState: true });
    if (was) this.emit("mode", null);
  }

  /** A supervisor never ends the customer's call: hanging up stops monitoring. */
  hangup() {
    return this.stop();
  }

  /** Local only: silence our microphone in whisper / barge (the server keeps the mode). */
  async mute(muted = true) {
    this.muted = muted;
    const mic = this.localStream?.getAudioTracks()[0];
    if (mic) mic.enabled = !muted;
    this.emit("state", this.state);
  }

  /** Not for supervisors: a monitor does not ask for or accept calls. */
  async request() {
    throw new Error("a supervisor monitors a call with setMode(); it cannot request one");
  }

  async accept() {
    throw new Error("a supervisor monitors a call with setMode(); it cannot accept one");
  }

  /** Whether our microphone is being sent right now (a track on the sender). */
  get talking() {
    return Boolean(this._tx?.audio.sender.track);
  }

  async _addTransceivers(pc) {
    this._tx = {
      audio: pc.addTransceiver("audio", { direction: "sendrecv" }), // our microphone; the customer
      agent: pc.addTransceiver("audio", { direction: "recvonly" }), // the agent
    };
    this.customerStream = new MediaStream([this._tx.audio.receiver.track]);
    this.agentStream = new MediaStream([this._tx.agent.receiver.track]);
    this.remoteStream = new MediaStream([this._tx.audio.receiver.track, this._tx.agent.receiver.track]);
    this.emit("customerstream", this.customerStream);
    this.emit("agentstream", this.agentStream);
    if (SegueMonitor.talks(this.mode)) await this._sendMicrophone(await this._microphone());
  }

  _shouldReplace() {
    return this.mode != null;
  }

  async _microphone() {
    const live = this.localStream?.getAudioTracks().find((t) => t.readyState === "live");
    if (live) return live;
    this.localStream = await navigator.mediaDevices.getUserMedia({ audio: this.options.audio, video: false });
    const mic = this.localStream.getAudioTracks()[0];
    mic.enabled = !this.muted;
    return mic;
  }

  /** Put `track` (or nothing) on our audio sender; releases the microphone when nothing is sent. */
  async _sendMicrophone(track) {
    const sender = this._tx?.audio.sender;
    if (sender && sender.track !== track) await sender.replaceTrack(track);
    if (!track) this._releaseMicrophone();
  }

  _releaseMicrophone() {
    if (this.localStream) this.localStream.getTracks().forEach((t) => t.stop());
    this.localStream = null;
  }
}

/**
 * Who is monitoring, from a `call.state` (its `supervisor` field): `{id, name, mode}` or null.
 * Agents see every mode; customers are only shown a barge (the server leaves the field null
 * otherwise). Used by the call bar and the wallboard.
 */
export function supervisorOf(state) {
  const s = state?.supervisor;
  if (!s || !s.mode) return null;
  return { id: s.id ?? null, name: s.name ?? null, mode: s.mode };
}
