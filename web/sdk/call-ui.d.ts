/**
 * Types for `call-ui.js` (`@segue/sdk/call-ui`): the call bar the widget and the agent console
 * share (state line, Accept / Decline, requests, supervisor line, controls, media tiles).
 */
import type { SegueCall } from "./call.js";
import type { Translator } from "./i18n.js";

export interface CallBarOptions {
  /** Whose bar it is: decides the wording and the controls (hold is for agents). */
  kind: "customer" | "agent";
  /** Called with a failed action's error (show it to the person). */
  onError?: (error: unknown) => void;
  /** Its language (default English). */
  t?: Translator;
}

/** The call bar; append `element` where it belongs, `destroy()` when done. */
export declare class CallBar {
  constructor(call: SegueCall<any>, options: CallBarOptions);
  readonly call: SegueCall<any>;
  readonly kind: "customer" | "agent";
  /** The bar's root element. */
  readonly element: HTMLElement;
  render(): void;
  destroy(): void;
}

/** `mm:ss` (or `h:mm:ss`) for a duration in milliseconds. */
export declare function clock(ms: number): string;
