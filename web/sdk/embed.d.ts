/**
 * Types for `embed.js`, the classic-script loader: it defines `window.Segue`. For pages that load
 * the script tag and are written in TypeScript: `/// <reference types="@segue/sdk/embed" />` or
 * `import type {} from "@segue/sdk/embed"`.
 */
import type { AttributesUpdate, Attributes, SignedIdentity } from "./segue.js";
import type { ChatWidget, ChatWidgetOptions } from "./widget.js";

export type SegueMethod = "init" | "open" | "close" | "toggle" | "destroy" | "setUser" | "setAttributes" | "call";

/** `window.Segue`: methods called before the widget is mounted wait for it, in order. */
export interface SegueEmbed {
  /** Mount the widget once (`url` defaults to the origin embed.js came from); again: the same widget. */
  init(options?: ChatWidgetOptions): Promise<ChatWidget>;
  open(): Promise<void>;
  close(): Promise<void>;
  toggle(): Promise<void>;
  /** Unmount; a later init() mounts a new widget. */
  destroy(): Promise<void>;
  setUser(user: { site: string; identity: SignedIdentity }): Promise<unknown>;
  setAttributes(attributes: AttributesUpdate): Promise<{ attributes: Attributes } | unknown>;
  call(options?: { video?: boolean }): Promise<unknown>;
  /** The mounted widget, else null. */
  readonly widget: ChatWidget | null;
  /** The same methods by name: `Segue("init", {...})` (what a pre-load stub queues). */
  (method: "init", options?: ChatWidgetOptions): Promise<ChatWidget>;
  (method: Exclude<SegueMethod, "init">, ...args: unknown[]): Promise<unknown>;
}

/** A pre-load stub's queue: `window.Segue = function () { (Segue.q = Segue.q || []).push(arguments) }`. */
export interface SegueStub {
  (method: SegueMethod, ...args: unknown[]): void;
  q?: ArrayLike<unknown>[];
}

declare global {
  interface Window {
    /** Defined once embed.js has run (it loads `async`: check, or use a SegueStub first). */
    Segue?: SegueEmbed;
  }
}
