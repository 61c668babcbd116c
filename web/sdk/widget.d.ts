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
  MessageEvent,
  SegueCustomer,
  SegueEvent,
  SignedIdentity,
} from "./segue.js";
import type { CallState, SegueCall } from "./call.js";
import type { Locale, Messages } from "./i18n.js";

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
  onMessage?: (event: MessageEvent | SegueEvent, conversation: CustomerConversation) => void;
  onCallState?: (state: CallState, call: SegueCall) => void;
  onConversationEnd?: (summary: ConversationSummary, conversation: CustomerConversation) => void;
}

/** A mounted widget. */
export interface ChatWidget {
  open(): void;
  close(): void;
  toggle(): void;
  /** Unmount it and disconnect. */
  destroy(): void;
  /** Reconnect as a verified customer (e.g. after your site's sign-in). */
  setUser(user: { site: string; identity: SignedIdentity }): Promise<CustomerSession | unknown>;
  setAttributes(attributes: AttributesUpdate): Promise<{ attributes: Attributes } | unknown>;
  /** Start a call in the shown conversation (or a new one); `video: true` turns the camera on. */
  call(options?: { video?: boolean }): Promise<unknown>;
  setLocale(locale: Locale): void;
  readonly customer: SegueCustomer;
  /** The conversation shown (null on the start form). */
  readonly conversation: CustomerConversation | null;
  /** The host element (its shadow root holds the UI). */
  readonly element: HTMLElement;
  readonly shadowRoot: ShadowRoot | null;
}

/** Mount the launcher and panel. */
export declare function mountChatWidget(options?: ChatWidgetOptions): ChatWidget;
