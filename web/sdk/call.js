/**
 * Segue calls — voice, video and screen share inside a conversation, on ONE RTCPeerConnection.
 *
 *   import { SegueCall } from "/sdk/call.js";
 *   const call = new SegueCall(client, conversationId);   // client: SegueCustomer / SegueAgent
 *   call.on("requested", ({media, by}) => ...);            // the other side asks (voice/video/screen)
 *   call.on("state", (state) => ...);                       // server's call.state
 *   call.on("remotestream", (stream) => audioEl.srcObject = videoEl.srcObject = stream);
 *   call.on("screenstream", (stream) => screenEl.srcObject = stream);
 *   call.on("ended", ({reason, durations}) => ...);
 *   await call.request("voice", { pageUrl: location.href });   // or await call.accept()
 *   // once accepted (event "accepted", or accept() resolved), media starts by itself:
 *   await call.startVideo(); await call.stopVideo();
 *   await call.startScreen(); await call.stopScreen();
 *   await call.mute(true); await call.hold(true) (agents); await call.hangup();
 *
 * Rules (docs/calls.md): the browser is always the offerer and the server always answers
 * (aiortc cannot re-offer safely); when the server needs a change it pushes `call.renegotiate`
 * and we offer again. That is the perfect-negotiation pattern with the browser as the only
 * "impolite" side: there is never glare, so no rollback is ever needed. Transceivers are created
 * in a fixed order — microphone (audio), camera (video), screen (video) — the server maps media
 * by that order. A failed connection is replaced by a new one (aiortc has no ICE restart);
 * the server re-attaches it to the running call within media.reconnect_grace_s.
 */
import { Emitter } from "./segue.js";

const MEDIA = ["voice", "video", "screen"];

export class SegueCall extends Emitter {
  /**
   * @param client  an object with `socket` (Socket.IO socket, connected) and
   *                `request(event, payload) -> Promise<result>` (SegueCustomer / SegueAgent do)
   * @param conversationId  the conversation this call belongs to
   * @param options {audio?: MediaTrackConstraints|true, autoStart?: true, autoResume?: true}
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
    this.muted = false;
    this._tx = null; // {audio, camera, screen} transceivers
    this._negotiating = false;
    this._again = false;
    this._answered = false;
    this._pendingCandidates = [];
    this._listeners = [];
    this._listen();
  }

  // --- requests ----------------------------------------------------------------------------

  /** Ask for a call ("voice") or, during a call, for "video" / "screen". */
  async request(media = "voice", { pageUrl } = {}) {
    if (!MEDIA.includes(media)) throw new Error(`media must be one of ${MEDIA.join(", ")}`);
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
    this.localStream = await navigator.mediaDevices.getUserMedia({ audio: this.options.audio, video: false });
    const pc = new RTCPeerConnection({
      iceServers: this.iceServers,
      bundlePolicy: "max-bundle",
      iceTransportPolicy: this.options.iceTransportPolicy || "all",
    });
    this.pc = pc;
    this._answered = false;
    const mic = this.localStream.getAudioTracks()[0];
    mic.enabled = !this.muted;
    this._tx = {
      audio: pc.addTransceiver(mic, { direction: "sendrecv", streams: [this.localStream] }),
      camera: pc.addTransceiver("video", { direction: "recvonly" }),
      screen: pc.addTransceiver("video", { direction: "recvonly" }),
    };
    this.remoteStream = new MediaStream([this._tx.audio.receiver.track, this._tx.camera.receiver.track]);
    this.screenStream = new MediaStream([this._tx.screen.receiver.track]);
    this.emit("remotestream", this.remoteStream);
    this.emit("screenstream", this.screenStream);
    pc.onicecandidate = ({ candidate }) => this._candidate(candidate);
    pc.onnegotiationneeded = () => this.negotiate();
    pc.onconnectionstatechange = () => {
      this.emit("connection", pc.connectionState);
      if (pc.connectionState === "failed" && this.pc === pc && this.state.state === "active") {
        // no ICE restart on the server: replace the connection, the call re-attaches it
        this._replace();
      }
    };
    await this.negotiate();
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
    return { camera: this._tx?.camera.sender.track || null, screen: this._tx?.screen.sender.track || null };
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
    const stream = await getMedia();
    const track = stream.getVideoTracks()[0];
    const tx = this._tx[which];
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
    const videos = this.localVideo();
    this._teardown({ keepState: true });
    await this._start();
    if (videos.camera && videos.camera.readyState === "live") {
      await this._tx.camera.sender.replaceTrack(videos.camera);
      this._tx.camera.direction = "sendrecv";
      await this.negotiate();
    }
  }

  _teardown({ keepState = false } = {}) {
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
      if (p.media === "voice" && !this.pc && this.options.autoStart) {
        try {
          await this.start();
        } catch (err) {
          this.emit("error", err);
        }
      }
    });
    this._on("call.state", (p) => this._setState(p));
    this._on("call.renegotiate", () => this.negotiate());
    this._on("call.ended", (p) => {
      this._teardown();
      this.emit("ended", p);
    });
  }
}
