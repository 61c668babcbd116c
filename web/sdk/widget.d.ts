/**
 * Types for `widget.js` (`@segue/sdk/widget`): the embeddable chat launcher and panel, in its own
 * Shadow DOM (styles from widget.css inside it), translatable (en, zh-CN), themable.
 */
import type {
  Attributes,
  AttributesUpdate,
  ConversationSummary,
  CustomerConversation,
  CustomerSession,
  SegueMessageEvent,
  SegueCustomer,
  SignedIdentity,
} from "./segue.js";
import type { CallState, SegueCall } from "./call.js";
import type { Locale, Messages, Translator } from "./i18n.js";

export interface WidgetTheme {
  /** A CSS colour for buttons, the launcher and your messages. */
  accent?: string;
  position?: "bottom-right" | "bottom-left";
  /** "auto" follows the visitor's prefers-color-scheme. */
  mode?: "light" | "dark" | "auto";
}

export interface ChatWidgetOptions {
  /** The Segue node (default: the page's origin; embed.js: the origin it was loaded from). */
  url?: string;
  /** Queue for new conversations (default: the server's default queue). */
  queue?: string;
  /** Topics the visitor may pick from. */
  queues?: Array<{ name: string; label?: string }>;
  /** A verified identity (both or neither). */
  site?: string;
  identity?: SignedIdentity;
  /** Panel title (default: the locale's "Chat with us"). */
  title?: string;
  /** Where to mount (default document.body). */
  container?: Element;
  /** Default: from navigator.language, else "en". */
  locale?: Locale;
  /** Your own wording for some strings. */
  messages?: Messages;
  theme?: WidgetTheme;
  /** Custom attributes the agent sees (e.g. plan, cart value). */
  attributes?: Attributes;
  /** Record the pages the visitor opens (default true). */
  trackPages?: boolean;
  /** Show the launcher button (default true); false: open it from your own button. */
  launcher?: boolean;
  onReady?: (widget: ChatWidget) => void;
  /** Each new chat message (the agent's and the visitor's own; not those replayed from the cache). */
  onMessage?: (event: SegueMessageEvent, conversation: CustomerConversation) => void;
  onCallState?: (state: CallState, call: SegueCall) => void;
  onConversationEnd?: (summary: ConversationSummary, conversation: CustomerConversation) => void;
}

/**
 * `widget.call`: call it to start a call (`widget.call({video: true})`); it also reads through to
 * the shown conversation's SegueCall (`widget.call.state`, `widget.call.hangup()`), whose members
 * are undefined while there is none (`widget.currentCall` is the SegueCall or null).
 */
export type CallHandle = ((options?: { video?: boolean }) => Promise<void>) & Partial<SegueCall>;

/** A mounted widget (mountChatWidget creates and mounts one). */
export declare class ChatWidget {
  constructor(options?: ChatWidgetOptions);
  readonly options: ChatWidgetOptions;
  readonly customer: SegueCustomer;
  /** The conversation shown (null on the start form). */
  readonly conversation: CustomerConversation | null;
  /** The host element (`<segue-widget>`; its open shadow root holds the UI). */
  get element(): HTMLElement;
  readonly shadowRoot: ShadowRoot;
  get isOpen(): boolean;
  /** The "Call us" button (in the shadow root). */
  readonly callButton: HTMLButtonElement;
  /** The widget's translator (its locale and messages). */
  readonly t: Translator;
  get call(): CallHandle;
  /** The shown conversation's SegueCall, or null. */
  get currentCall(): SegueCall | null;
  /** Mount into `container` (mountChatWidget does it). */
  mount(container: Element): void;
  open(): void;
  close(): void;
  toggle(): void;
  /** Unmount and disconnect (a running call is not ended); mounting again works. */
  destroy(): void;
  /** Reconnect as a verified customer (after your site's sign-in), or anonymous with nulls. */
  setUser(user: { site: string; identity: SignedIdentity } | { site?: null; identity?: null }): Promise<CustomerSession>;
  /** Custom attributes the agent sees (null deletes a key); resolves with all of them. */
  setAttributes(attributes: AttributesUpdate): Promise<{ attributes: Attributes }>;
  /** A call from the web: in the shown conversation, or a new one straight into a call. */
  startCall(options?: { video?: boolean }): Promise<void>;
  /** Rebuild in another language (a shipped locale or one added with addLocale). */
  setLocale(locale: Locale, messages?: Messages): void;
}

/** Mount the launcher and panel. */
export declare function mountChatWidget(options?: ChatWidgetOptions): ChatWidget;
