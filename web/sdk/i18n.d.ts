/**
 * Types for `i18n.js` (`@segue/sdk/i18n`): the message catalogue of the widget, the call bar and
 * the event descriptions (locales "en" and "zh-CN" shipped; more with addLocale).
 */

/** Locales Segue ships; addLocale() may add others. */
export type ShippedLocale = "en" | "zh-CN";
export type Locale = ShippedLocale | (string & {});

/** A catalogue key, e.g. "widget.title" (MESSAGE_KEYS lists them all). */
export type MessageKey = `${"widget" | "error" | "receipt" | "channel" | "media" | "who" | "event" | "call" | "callbar" | "reason" | "transfer" | "console" | "board" | "login" | "presence" | "disposition" | "state" | "language" | "home" | "help"}.${string}`;

/** Text for some keys, with `{name}` placeholders; keys left out fall back to English. */
export type Messages = Partial<Record<MessageKey, string>>;

/** A translate function for one locale. */
export interface Translator {
  (key: MessageKey, params?: Record<string, string | number | null | undefined>): string;
  /** The locale it speaks. */
  readonly locale: Locale;
  has(key: string): boolean;
  /** A time of day ("14:05"), with the date when not today. */
  time(ts: number | null | undefined): string;
  /** A duration in seconds ("1 min, 15 sec"). */
  duration(seconds: number): string;
  /** A ratio as a percentage in the locale's form (0.8 → "80%"). */
  percent(ratio: number): string;
  /** Items as a list in the locale's form ("Chat, Voice" / "文字聊天、语音"). */
  list(items: Iterable<string>): string;
  /** An error's text by its `code` (`<scope>.error.<code>`, then `error.<code>`), else its message. */
  error(error: { code?: string; message?: string } | unknown, scope?: string): string;
}

/** Every key of the (English) reference catalogue. */
export declare const MESSAGE_KEYS: readonly MessageKey[];
/** The locales available now. */
export declare function locales(): Locale[];
/** Add or extend a locale; unknown keys throw a TypeError. */
export declare function addLocale(locale: string, messages: Messages): void;
/** The available locale that best serves a tag or a list of tags (else "en"). */
export declare function resolveLocale(requested: string | readonly string[] | null | undefined): Locale;
/** The browser's preferred available locale. */
export declare function browserLocale(): Locale;
/** A translator; `overrides` replace catalogue entries for it only (unknown keys throw). */
export declare function translator(locale?: Locale, overrides?: Messages): Translator;
/** The English translator. */
export declare const english: Translator;
