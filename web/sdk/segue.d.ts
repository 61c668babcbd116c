/**
 * Types for `segue.js`, Segue's browser SDK (`@segue/sdk`). Hand-written to match the module;
 * tests/ts type-checks an example against them and checks every declared export and method
 * exists at run time. Wire formats: docs/protocol.md.
 */
import type { SegueMonitor, MonitorMode } from "./call.js";

/** The protocol version this SDK speaks (`auth.v` on connect). */
export declare const PROTOCOL_VERSION: 1;

/* ---------------------------------------------------------------------------------------------- */
/* Wire types                                                                                     */
/* ---------------------------------------------------------------------------------------------- */

export type Channel = "chat" | "voice" | "video" | "screen";
export type ConversationState = "queued" | "offered" | "assigned" | "transferring" | "closed";
export type AuthorKind = "customer" | "agent" | "system";
export type Presence = "available" | "away" | "offline";
export type AgentRole = "agent" | "supervisor" | "admin";
export type Visibility = "all" | "agents";

/** Who wrote an event: `{kind: "system", id: "segue", name: "Segue"}` for the server. */
export interface Author {
  kind: AuthorKind;
  id: string;
  name?: string | null;
}

/** An agent as events and summaries name them. */
export interface AgentRef {
  id: string;
  name: string;
}

/** A custom attribute's value (`setAttributes`); `null` in an update deletes the key. */
export type AttributeValue = string | number | boolean;
export type Attributes = Record<string, AttributeValue>;
export type AttributesUpdate = Record<string, AttributeValue | null>;

/** What a conversation records about the page it started on. */
export interface PageContext {
  page_url?: string;
  page_title?: string;
  referrer?: string;
  locale?: string;
  [key: string]: unknown;
}

/**
 * Event types of the log (docs/protocol.md "Events"; `call.*`: docs/calls.md). Open-ended: a
 * newer server may add types, which an older page should show or skip, not choke on.
 */
export type EventType =
  | "conversation.created"
  | "conversation.queued"
  | "conversation.offered"
  | "conversation.requeued"
  | "conversation.assigned"
  | "conversation.overflowed"
  | "conversation.closed"
  | "conversation.rated"
  | "message"
  | "note"
  | "transfer.requested"
  | "transfer.accepted"
  | "transfer.completed"
  | "transfer.cancelled"
  | "consult.message"
  | "attributes.updated"
  | "page.viewed"
  | `call.${string}`
  | (string & {});

/** The `data` of an event; its fields depend on `type`. */
export interface EventData {
  text?: string;
  client_id?: string;
  channel?: Channel;
  [key: string]: unknown;
}

/** One log event. `id` is the Redis stream id (`"<ms>-<seq>"`): identity and resume cursor. */
export interface SegueEvent {
  id: string;
  conversation_id: string;
  type: EventType;
  /** The stream id's milliseconds. */
  ts: number;
  author: Author;
  visibility?: Visibility;
  data: EventData;
}

/** A chat message. */
export interface SegueMessageEvent extends SegueEvent {
  type: "message";
  data: EventData & { text: string; client_id?: string };
}

/** A transfer in progress (agents only). */
export interface TransferInfo {
  mode: "cold" | "warm";
  accepted: boolean;
  from_agent?: AgentRef | null;
  to: { agent?: AgentRef; queue?: string };
}

/** A conversation's summary (the `conversation` push and every `{conversation}` result). */
export interface ConversationSummary {
  id: string;
  state: ConversationState;
  customer: { id: string; name?: string | null; email?: string | null; verified?: boolean };
  queue: string;
  channel: Channel;
  channels: Channel[];
  agent?: AgentRef | null;
  created_ts: number;
  closed_ts?: number | null;
  last_event_id?: string | null;
  disposition?: string | null;
  csat?: { score: number; comment?: string } | null;
  read?: { customer?: string; agent?: string };
  context?: PageContext;
  /** Custom attributes (agents). */
  attributes?: Attributes;
  /** Agents only. */
  transfer?: TransferInfo;
  /** Agents only. */
  offer?: { agent: AgentRef };
  /** Wrap-up (agents): every channel used, seconds on each, completed transfers, calls, tags. */
  channels_used?: Channel[];
  channel_time?: Partial<Record<Channel, number>>;
  transfers?: { from_agent: AgentRef; to: { agent?: AgentRef; queue?: string }; mode: "cold" | "warm"; ts: number; note?: string }[];
  calls?: { started_ts: number; media: string; ended_ts?: number; duration_s?: number; recording?: { id: string; url: string } }[];
  recording?: { id: string; url: string };
  tags?: string[];
}

/** The customer's `session` (on every connect). */
export interface CustomerSession {
  customer_id: string;
  visitor_token: string;
  name: string | null;
  email?: string | null;
  verified?: boolean;
}

/** An agent's record. */
export interface AgentRecord {
  id: string;
  username?: string;
  name: string;
  role: AgentRole;
  skills: string[];
  capacity: Record<string, number>;
  channels?: string[];
  presence: Presence;
}

/** The agent's `session` (on every connect). */
export interface AgentSession {
  agent: AgentRecord;
  watch?: true;
}

/** A verified identity, signed by the embedding site's server (docs/sdk.md "Verified identity"). */
export interface SignedIdentity {
  id: string;
  name?: string;
  email?: string;
  /** Unix seconds. */
  ts: number;
  /** hex(HMAC-SHA256(site secret, "id|name|email|ts")). */
  sig: string;
}

export interface TypingPayload {
  conversation_id: string;
  author: Author;
  typing: boolean;
}

export interface ReadPayload {
  conversation_id: string;
  reader: { kind: AuthorKind; id: string };
  event_id: string;
}

export interface PositionPayload {
  conversation_id: string;
  position: number | null;
  estimated_wait_s: number | null;
}

export interface QueueStats {
  name: string;
  waiting: number;
  longest_wait_s: number;
  agents_available: number;
  answer_target_s?: number;
}

export interface CannedReply {
  id: string;
  title: string;
  text: string;
}

/**
 * Error codes of the protocol plus the SDK's own (`timeout`, `not_connected`, and `resume_failed`:
 * a resume the SDK made by itself after a reconnect or `resync` could not be answered, retries spent).
 */
export type SegueErrorCode =
  | "invalid"
  | "too_large"
  | "forbidden"
  | "conflict"
  | "not_found"
  | "unavailable"
  | "rate_limited"
  | "unauthorized"
  | "bad_token"
  | "bad_identity"
  | "timeout"
  | "not_connected"
  | "resume_failed"
  | "unknown"
  | (string & {});

/* ---------------------------------------------------------------------------------------------- */
/* Building blocks                                                                                */
/* ---------------------------------------------------------------------------------------------- */

/** The argument list of an event, from an event map `{name: [arg, ...]}`. */
export type EventArgs<T> = T extends unknown[] ? T : never;

/** A minimal event emitter; `on` returns a function that unsubscribes. */
export declare class Emitter<Events extends object = Record<string, unknown[]>> {
  on<K extends keyof Events & string>(type: K, handler: (...args: EventArgs<Events[K]>) => void): () => void;
  once<K extends keyof Events & string>(type: K, handler: (...args: EventArgs<Events[K]>) => void): () => void;
  off<K extends keyof Events & string>(type: K, handler: (...args: EventArgs<Events[K]>) => void): void;
  emit<K extends keyof Events & string>(type: K, ...args: EventArgs<Events[K]>): void;
}

/** A refused request or a server `error` push. */
export declare class SegueError extends Error {
  constructor(
    code: SegueErrorCode,
    message?: string,
    details?: { field?: string; event?: string; retryAfterMs?: number; conversationId?: string },
  );
  readonly name: "SegueError";
  code: SegueErrorCode;
  /** The request field at fault (`invalid`). */
  field?: string;
  /** The request that failed. */
  event?: string;
  /** `rate_limited`: milliseconds to wait before sending again (requests are retried a few times first). */
  retryAfterMs?: number;
  /** `resume_failed`: the conversation that may be missing events. */
  conversationId?: string;
  static from(error: unknown, event?: string): SegueError;
}

/** Order two event ids (`"<ms>-<seq>"`): <0, 0 or >0; null sorts first. */
export declare function compareIds(a: string | null | undefined, b: string | null | undefined): number;

/** The Socket.IO socket as the SDK exposes it (for plug-ins listening to pushes). */
export interface SegueSocket {
  readonly connected: boolean;
  readonly id?: string;
  on(event: string, listener: (...args: any[]) => void): unknown;
  off(event: string, listener?: (...args: any[]) => void): unknown;
  emit(event: string, ...args: unknown[]): unknown;
  disconnect(): unknown;
}

/* ---------------------------------------------------------------------------------------------- */
/* Conversations                                                                                  */
/* ---------------------------------------------------------------------------------------------- */

export interface ConversationEvents {
  event: [event: SegueEvent, info: { replay: boolean }];
  message: [event: SegueMessageEvent, info: { replay: boolean }];
  conversation: [summary: ConversationSummary];
  typing: [payload: TypingPayload];
  read: [payload: ReadPayload];
  position: [payload: PositionPayload];
  pending: [payload: { client_id: string; text: string }];
  failed: [payload: { client_id: string; text: string; error: SegueError }];
}

/** One conversation: summary, events (sorted by id, no duplicates) and actions. */
export declare class Conversation extends Emitter<ConversationEvents> {
  constructor(client: SegueClient<any, any, any>, id: string);
  readonly client: SegueClient<any, any, any>;
  readonly id: string;
  summary: ConversationSummary | null;
  /** In id order. */
  events: SegueEvent[];
  /** Agents: the customer's other conversations, newest first. */
  history: ConversationSummary[];
  /** Latest read receipt per reader (`"kind:id"`). */
  reads: Map<string, ReadPayload>;
  /** Last queue position (customers). */
  position: PositionPayload | null;
  /** Sent and not yet acknowledged: client_id → text. */
  pending: Map<string, string>;
  get state(): ConversationState | null;
  get isClosed(): boolean;
  /** The newest event's id: the resume cursor. */
  get lastEventId(): string | null;
  /**
   * Where a resume not answered yet started (`null`: from the start; `undefined`: none): events
   * after it may be missing although later ones arrived. The next resume starts there.
   */
  missingAfter: string | null | undefined;
  get messages(): SegueMessageEvent[];
  has(eventId: string): boolean;
  /** Add events (ack, push, resume, cache); returns those that were new. */
  ingest(events: readonly SegueEvent[] | null | undefined, options?: { replay?: boolean }): SegueEvent[];
  updateSummary(summary: Partial<ConversationSummary> | null | undefined): void;
  /** Fetch what was missed since the last event (or since `missingAfter`, when set). */
  resume(): Promise<this>;
  /** Resolves with the stored message (delivered through "event"/"message" once). */
  send(text: string, options?: { clientId?: string }): Promise<SegueMessageEvent>;
  setTyping(typing: boolean): void;
  noteTyping(idleMs?: number): void;
  markRead(eventId?: string | null): void;
  readUpTo(kind: AuthorKind): string | null;
}

/** The customer's side of a conversation. */
export declare class CustomerConversation extends Conversation {
  readonly client: SegueCustomer;
  close(): Promise<SegueEvent>;
  rate(score: 1 | 2 | 3 | 4 | 5, comment?: string): Promise<SegueEvent>;
  get rated(): boolean;
  /** Stop resuming it on later visits (it stays on the server). */
  forget(): void;
}

/** An agent's side of a conversation. */
export declare class AgentConversation extends Conversation {
  readonly client: SegueAgent;
  get readOnly(): boolean;
  addNote(text: string): Promise<SegueEvent>;
  transfer(to: { agent: string } | { queue: string }, options?: { mode?: "cold" | "warm"; note?: string }): Promise<SegueEvent>;
  consult(text: string): Promise<SegueEvent>;
  completeTransfer(): Promise<SegueEvent>;
  cancelTransfer(): Promise<SegueEvent>;
  /** Close with a disposition and optional wrap-up tags (at most 20, 1-40 characters each). */
  close(disposition: string, options?: { tags?: string[] }): Promise<SegueEvent>;
  renderCanned(id: string): Promise<string>;
  get pendingTransfer(): TransferInfo | null;
}

/* ---------------------------------------------------------------------------------------------- */
/* Clients                                                                                        */
/* ---------------------------------------------------------------------------------------------- */

/** Events every client emits; conversation events come with the conversation as last argument. */
export interface ClientEvents<C extends Conversation = Conversation, S = unknown> {
  session: [session: S];
  connect: [];
  disconnect: [reason: string];
  reconnect: [];
  connect_error: [error: SegueError];
  error: [error: SegueError];
  event: [event: SegueEvent, conversation: C, info: { replay: boolean }];
  message: [event: SegueMessageEvent, conversation: C, info: { replay: boolean }];
  conversation: [summary: ConversationSummary, conversation: C];
  typing: [payload: TypingPayload, conversation: C];
  read: [payload: ReadPayload, conversation: C];
  position: [payload: PositionPayload, conversation: C];
}

export interface ClientOptions {
  /** The Segue node (default: the page's origin). */
  url?: string;
  /** Socket.IO path (default `/socket.io`). */
  path?: string;
  /** Storage key prefix. */
  storagePrefix?: string;
  /** No ack within this time: a `timeout` SegueError (default 15000). */
  requestTimeoutMs?: number;
}

/** What customers and agents share (not exported by segue.js: use the subclasses). */
declare class SegueClient<Events extends object, C extends Conversation = Conversation, S = unknown> extends Emitter<Events> {
  protected constructor(namespace: string, options?: ClientOptions);
  readonly url: string;
  readonly namespace: string;
  readonly path: string;
  requestTimeoutMs: number;
  /** The Socket.IO socket (null before connect()). */
  socket: SegueSocket | null;
  /** The last `session`. */
  session: S | null;
  conversations: Map<string, C>;
  get connected(): boolean;
  /** The Conversation for `id` (created empty on first use; always the same object). */
  conversation(id: string): C;
  /** Rejects when the server refuses for good; `unavailable` / `rate_limited` refusals are connected again. */
  connect(): Promise<S>;
  disconnect(): void;
  /** A request with an ack: resolves with the ack's result (without `ok`), rejects with a SegueError. */
  request<T = Record<string, any>>(event: string, payload?: object): Promise<T>;
}
export type { SegueClient };

export interface CustomerOptions extends ClientOptions {
  /** With `identity`: a verified identity (names the secret in `auth.sites`). */
  site?: string;
  identity?: SignedIdentity;
  /** Per conversation, in sessionStorage (default 500). */
  maxCachedEvents?: number;
  /** Resume remembered conversations on connect (default true). */
  autoResume?: boolean;
}

export interface StartConversationOptions {
  queue?: string;
  channel?: "chat" | "voice" | "video";
  /** Merged over the page's URL, title, referrer and locale. */
  context?: PageContext;
  /** Custom attributes of the customer, set with the conversation. */
  attributes?: Attributes;
  /** A first message. */
  text?: string;
  /** An anonymous visitor's name / e-mail (a verified identity brings its own). */
  name?: string;
  email?: string;
}

export type CustomerEvents = ClientEvents<CustomerConversation, CustomerSession>;

/** The customer side (`/customer`). */
export declare class SegueCustomer extends SegueClient<CustomerEvents, CustomerConversation, CustomerSession> {
  constructor(options?: CustomerOptions);
  site: string | null;
  identity: SignedIdentity | null;
  maxCachedEvents: number;
  autoResume: boolean;
  get visitorToken(): string | null;
  /** Resolves with the session once remembered conversations are resumed. */
  connect(): Promise<CustomerSession>;
  startConversation(options?: StartConversationOptions): Promise<CustomerConversation>;
  /** Remembered by this browser, oldest first. */
  rememberedConversations(): CustomerConversation[];
  /** The remembered ones that are not closed. */
  openConversations(): CustomerConversation[];
  openConversation(id: string): Promise<CustomerConversation>;
  listConversations(): Promise<ConversationSummary[]>;
  /** listConversations(), newest first. */
  history(): Promise<ConversationSummary[]>;
  /** Published help articles matching `q`, best first (docs/knowledge.md). */
  searchHelp(q: string, options?: { limit?: number }): Promise<HelpArticleHit[]>;
  /** A published help article; `html` is sanitised by the server. Counts toward self-service. */
  helpArticle(slug: string): Promise<HelpArticle>;
  forget(id: string): void;
  resetVisitor(): void;
  /** Set (or, with null, delete) custom attributes the agent sees. */
  setAttributes(attributes: AttributesUpdate, options?: { conversationId?: string }): Promise<{ attributes: Attributes }>;
  /** Record a page of the trail the agent sees (defaults: location.href, document.title). */
  pageView(page?: { url?: string; title?: string }): Promise<void>;
  /** Reconnect as a verified customer, or anonymous again with `{site: null, identity: null}`. */
  setIdentity(user: { site: string; identity: SignedIdentity } | { site?: null; identity?: null }): Promise<CustomerSession>;
}

export interface AgentOptions extends ClientOptions {
  /** Reopen my assigned conversations on connect (default true). */
  autoOpen?: boolean;
  /** A watch-only connection (wallboards): never offered work, no presence. */
  watch?: boolean;
}

export interface OfferPayload {
  conversation: ConversationSummary;
  events?: SegueEvent[];
  history?: ConversationSummary[];
  kind?: "new" | "transfer";
  from_agent?: AgentRef | null;
  expires_in_s?: number | null;
}

export type AgentEvents = ClientEvents<AgentConversation, AgentSession> & {
  offer: [offer: Offer];
  "offer.revoked": [payload: { conversation_id: string; reason: string }];
  assigned: [conversation: AgentConversation];
  queues: [queues: QueueStats[]];
  agent: [agent: AgentRecord | null];
  logout: [reason: string];
};

/** An offer of a conversation to this agent. */
export declare class Offer {
  constructor(agent: SegueAgent, payload: OfferPayload);
  readonly agent: SegueAgent;
  conversation: ConversationSummary;
  events: SegueEvent[];
  history: ConversationSummary[];
  kind: "new" | "transfer";
  fromAgent: AgentRef | null;
  expiresInS: number | null;
  expiresAt: number | null;
  payload: OfferPayload;
  get conversationId(): string;
  /** Seconds before it goes to someone else (null: no deadline). */
  get secondsLeft(): number | null;
  accept(): Promise<AgentConversation>;
  decline(): Promise<void>;
}

/** The agent side (`/agent`). */
export declare class SegueAgent extends SegueClient<AgentEvents, AgentConversation, AgentSession> {
  constructor(options?: AgentOptions);
  agent: AgentRecord | null;
  offers: Map<string, Offer>;
  queues: QueueStats[];
  autoOpen: boolean;
  readonly watch: boolean;
  monitors: Map<string, SegueMonitor>;
  /** The login token (sessionStorage). */
  get token(): string | null;
  login(username: string, password: string): Promise<{ token: string; [key: string]: unknown }>;
  logout(): Promise<void>;
  /** REST with this agent's token. */
  api<T = any>(method: string, path: string, body?: unknown): Promise<T>;
  connect(): Promise<AgentSession>;
  setPresence(status: Presence): Promise<AgentRecord>;
  openConversation(id: string): Promise<AgentConversation>;
  listConversations(): Promise<ConversationSummary[]>;
  refreshQueues(): Promise<QueueStats[]>;
  cannedReplies(options?: { refresh?: boolean }): Promise<CannedReply[]>;
  /** Conversations this agent may read, by words, customer and date (docs/knowledge.md). */
  search(query: SearchQuery): Promise<{ results: SearchResult[]; more: boolean; indexed_at: number }>;
  /** Published articles and canned replies matching the customer's latest messages. */
  suggestions(conversationId: string): Promise<{ articles: HelpArticleHit[]; replies: CannedSuggestion[]; from_text: string }>;
  dropConversation(id: string): void;
  /** Supervisors: listen / whisper / barge on a live call. */
  monitorCall(conversationId: string, mode?: MonitorMode): Promise<SegueMonitor>;
  stopMonitoring(conversationId: string): Promise<void>;
}

/** A help article found by SegueCustomer.searchHelp (docs/knowledge.md). */
export interface HelpArticleHit {
  id: string;
  slug: string;
  title: string;
  /** A fragment of the article; highlights: [start, end) character ranges of the matched words. */
  snippet: { text: string; highlights: Array<[number, number]> };
  /** The article's page on the Segue server: /kb/<slug>. */
  url: string;
  score: number;
}

/** A published help article (SegueCustomer.helpArticle). */
export interface HelpArticle {
  id: string;
  slug: string;
  title: string;
  /** The body as HTML sanitised by the server: safe to insert into a page. */
  html: string;
  url: string;
  updated_ts: number;
}

/** SegueAgent.search: at least words, a customer or a date. `from`/`to`: ms or ISO 8601 (a bare date: the whole day). */
export interface SearchQuery {
  q?: string;
  customer?: string;
  from?: string | number;
  to?: string | number;
  limit?: number;
}

/** One hit of SegueAgent.search. */
export interface SearchResult {
  conversation: ConversationSummary;
  event: { id: string; type: string; ts: number; author: { kind: string; name: string } };
  /** highlights: [start, end) character ranges of the matched words in text. */
  snippet: { text: string; highlights: Array<[number, number]> };
  /** BM25 relevance; null when listed newest first (no words given). */
  score: number | null;
}

/** A canned reply suggested for a conversation (fill it with AgentConversation.renderCanned(id)). */
export interface CannedSuggestion {
  id: string;
  title: string;
  snippet: { text: string; highlights: Array<[number, number]> };
  score: number;
}
