/**
 * Types for `call.js` (`@segue/sdk/call`): voice, video and screen share on one
 * RTCPeerConnection per participant (docs/calls.md), and a supervisor's monitor leg.
 */
import type { Author, Emitter, SegueError, SegueEvent, SegueSocket } from "./segue.js";

/** How long a `disconnected` connection waits before it is replaced (ms). */
export declare const STALL_REPLACE_MS: number;

export type CallMedia = "voice" | "video" | "screen";
export type MonitorMode = "listen" | "whisper" | "barge";
export type CallRole = "customer" | "agent" | "consult" | "supervisor";

/** The modes a supervisor may monitor in. */
export declare const MONITOR_MODES: readonly MonitorMode[];

/** Who monitors a call: `{id, name, mode}` (customers see it only on barge). */
export interface SupervisorInfo {
  id: string | null;
  name: string | null;
  mode: MonitorMode;
  connection?: RTCPeerConnectionState;
}

/** A call's state (`call.state` push and `{call}` results). */
export interface CallState {
  conversation_id?: string;
  state: "none" | "requested" | "active";
  requested_by?: Author | null;
  media_request?: { media: CallMedia; by: Author } | null;
  transfer?: unknown;
  supervisor?: SupervisorInfo | null;
  call?: {
    held: boolean;
    muted: CallRole[];
    media: { audio: boolean; video: boolean; screen: boolean };
    legs: Partial<Record<CallRole, { participant: string; connection: RTCPeerConnectionState; sending?: unknown; supervisor_audio?: boolean }>>;
    waiting_for: CallRole[];
    started_ts: number;
  } | null;
}

export interface CallRequestPush {
  conversation_id: string;
  media: CallMedia;
  by: Author;
}

export interface CallEndedPush {
  conversation_id: string;
  reason: "hangup" | "timeout" | "conversation_closed" | "shutdown" | (string & {});
  durations?: { call?: number; audio?: number; video?: number; screen?: number };
}

export interface CallEvents {
  requested: [payload: CallRequestPush];
  accepted: [payload: CallRequestPush];
  declined: [payload: CallRequestPush & { reason?: string }];
  state: [state: CallState];
  ended: [payload: CallEndedPush];
  /** Every state of the current connection. */
  connection: [state: RTCPeerConnectionState];
  /** The server holding the call stopped and another took it over: a new connection follows. */
  migrated: [payload: { conversation_id: string; [key: string]: unknown }];
  /** The connection is being replaced (old state). */
  replacing: [state: RTCPeerConnectionState | null];
  /** The other side's voice and camera. */
  remotestream: [stream: MediaStream];
  screenstream: [stream: MediaStream];
  /** A whispering / barging supervisor. */
  supervisorstream: [stream: MediaStream];
  error: [error: SegueError | Error];
}

/** What a call needs of its client: SegueCustomer and SegueAgent are such clients. */
export interface CallClient {
  socket: SegueSocket | null;
  request<T = Record<string, any>>(event: string, payload?: object): Promise<T>;
}

export interface SegueCallOptions {
  /** Microphone constraints (default true). */
  audio?: MediaTrackConstraints | boolean;
  /** Start the media when a voice call is accepted (default true). */
  autoStart?: boolean;
  /** refresh() reconnects a running call (default true). */
  autoResume?: boolean;
  iceTransportPolicy?: RTCIceTransportPolicy;
}

/** The ack of call.request / call.accept / call.hold / call.monitor. */
export interface CallResult {
  call: CallState;
  event: SegueEvent | null;
  ice_servers?: RTCIceServer[];
}

/** A call in one conversation; one per conversation and page. */
export declare class SegueCall<Events extends object = CallEvents> extends Emitter<Events> {
  constructor(client: CallClient, conversationId: string, options?: SegueCallOptions);
  readonly client: CallClient;
  readonly conversationId: string;
  options: SegueCallOptions;
  pc: RTCPeerConnection | null;
  state: CallState;
  iceServers: RTCIceServer[];
  localStream: MediaStream | null;
  remoteStream: MediaStream;
  screenStream: MediaStream;
  supervisorStream: MediaStream;
  muted: boolean;
  /** Ask for a call ("voice") or, during one, for "video" / "screen". */
  request(media?: CallMedia, options?: { pageUrl?: string }): Promise<CallResult>;
  /** Accept what the other side asked for (a voice call starts the media). */
  accept(): Promise<CallResult>;
  decline(reason?: string): Promise<{ event: SegueEvent }>;
  /** Ask for the state; with autoResume a running call gets a connection. */
  refresh(): Promise<CallState>;
  start(): Promise<void>;
  negotiate(): Promise<void>;
  startVideo(): Promise<void>;
  stopVideo(): Promise<void>;
  startScreen(): Promise<void>;
  stopScreen(): Promise<void>;
  localVideo(): { camera: MediaStreamTrack | null; screen: MediaStreamTrack | null };
  mute(muted?: boolean): Promise<void>;
  /** Agents: hold the customer. */
  hold(held?: boolean): Promise<CallResult>;
  /** End the call for everyone (the chat goes on). */
  hangup(): Promise<{ event: SegueEvent } | undefined>;
  bytes(): Promise<{ audio: { in: number; out: number }; video: { in: number; out: number } }>;
  /** Stop listening and close the connection (does not end the call). */
  close(): void;
}

export interface MonitorEvents extends CallEvents {
  customerstream: [stream: MediaStream];
  agentstream: [stream: MediaStream];
  /** The mode now; null once our leg is gone. */
  mode: [mode: MonitorMode | null];
}

/** A supervisor's leg on someone else's call (listen / whisper / barge). */
export declare class SegueMonitor extends SegueCall<MonitorEvents> {
  constructor(client: CallClient, conversationId: string, options?: SegueCallOptions);
  mode: MonitorMode | null;
  customerStream: MediaStream;
  agentStream: MediaStream;
  /** Whether our microphone is on the wire. */
  get talking(): boolean;
  static talks(mode: MonitorMode | null): boolean;
  /** Start monitoring in `mode` or switch to it (serialised, no renegotiation). */
  setMode(mode: MonitorMode): Promise<CallResult>;
  /** Take the seat again after a reconnect. */
  resume(): Promise<CallResult | null>;
  /** Our leg leaves; the call goes on. */
  stop(): Promise<void>;
  hangup(): Promise<undefined>;
  /** Monitors do not request or accept calls: these reject. */
  request(): Promise<never>;
  accept(): Promise<never>;
}

/** Who monitors, from a call state: `{id, name, mode}` or null. */
export declare function supervisorOf(state: CallState | null | undefined): { id: string | null; name: string | null; mode: MonitorMode } | null;
