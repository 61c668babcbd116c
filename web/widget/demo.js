// The demo page's embedding snippet (a file, not an inline script: the pages' Content-Security-Policy
// allows no inline scripts). Pass `url` when Segue runs on another origin, and `site` + `identity`
// (signed by your server) for a logged-in customer. See docs/sdk.md.
import { mountChatWidget } from "/sdk/widget.js";

window.segueWidget = mountChatWidget({
  queue: "general",
  queues: [
    { name: "general", label: "Anything" },
    { name: "billing", label: "Billing" },
  ],
});
