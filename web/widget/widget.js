// The widget moved to /sdk/widget.js; this path keeps existing embeds working.
export * from "../sdk/widget.js";
