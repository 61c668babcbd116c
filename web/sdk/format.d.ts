/**
 * Types for `format.js` (`@segue/sdk/format`): plain-text descriptions of events, times and
 * durations, translated (pass a translator from i18n.js; default English). Everything returned is
 * text for `textContent`, never HTML. Useful to headless UIs that show system events.
 */
import type { Channel, SegueEvent } from "./segue.js";
import type { Translator } from "./i18n.js";

/** English channel labels (channelLabel() translates). */
export declare const CHANNEL_LABELS: Readonly<Record<Channel, string>>;
/** "video" → "Video" in the translator's language; unknown channels as they are. */
export declare function channelLabel(channel: Channel | (string & {}), t?: Translator): string;
/** The name the server gives a customer who gave none ("Visitor"). */
export declare const UNNAMED_CUSTOMER: string;
/** A person's name as shown: an unnamed visitor's in the reader's language ("访客"), others as they are. */
export declare function personName<T extends string | null | undefined>(name: T, t?: Translator): T | string;
/** A wrap-up disposition in words ("follow_up" → "Needs follow-up"); unknown values as they are. */
export declare function dispositionLabel(disposition: string, t?: Translator): string;

export interface EventDescription {
  /** How to show it: a chat bubble, an internal note, a consultation, or a system line. */
  kind: "message" | "note" | "consult" | "system";
  text: string;
  /** False for event types this module has no words for (the widget hides those). */
  known: boolean;
}

/** How an event reads in a log, for a customer (friendlier, less internal) or an agent. */
export declare function describeEvent(
  event: Pick<SegueEvent, "type" | "data"> & Partial<SegueEvent>,
  options?: { viewer?: "customer" | "agent"; customerName?: string | null; t?: Translator },
): EventDescription;
/** "14:05" today, else with the date (the translator's locale). */
export declare function formatTime(ts: number | null | undefined, t?: Translator): string;
/** 75 → "1 min, 15 sec". */
export declare function formatDuration(seconds: number, t?: Translator): string;
/** The channel an event is about (its `data.channel`), or null when it names none. */
export declare function eventChannel(event: Pick<SegueEvent, "type" | "data">): Channel | null;
