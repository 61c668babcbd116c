/**
 * The npm package's entry points, resolved the way a bundler resolves them (`exports` with
 * `types`, through node_modules/@segue/sdk, a link to web/sdk): every subpath has declarations.
 */
import { PROTOCOL_VERSION, SegueCustomer, type SegueEvent } from "@segue/sdk";
import { mountChatWidget, type ChatWidgetOptions } from "@segue/sdk/widget";
import { SegueCall, SegueMonitor, MONITOR_MODES } from "@segue/sdk/call";
import { CallBar } from "@segue/sdk/call-ui";
import { translator, type Messages } from "@segue/sdk/i18n";
import { describeEvent } from "@segue/sdk/format";
import type { SegueEmbed } from "@segue/sdk/embed";

const version: 1 = PROTOCOL_VERSION;
const options: ChatWidgetOptions = { queue: "general" };
const messages: Messages = { "widget.title": "Hi" };
export const used = [version, options, messages, SegueCustomer, mountChatWidget, SegueCall, SegueMonitor, MONITOR_MODES, CallBar, translator, describeEvent];
export type Used = [SegueEvent, SegueEmbed];
// @ts-expect-error: not an entry of the package
import { h } from "@segue/sdk/dom";
export const notPublic = h;
