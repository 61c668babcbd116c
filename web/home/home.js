// The home page `/` (web/index.html): its words in the visitor's language, chosen like the console's
// (this browser's choice, else navigator.languages, else English: ../agent/locale.js), and the demo
// login while this server has the demo account (../agent/demo-login.js). Words: web/sdk/i18n.js `home.*`.
import { browserPageLocale } from "../agent/locale.js";
import { showDemoLogin } from "../agent/demo-login.js";

browserPageLocale(document.getElementById("home-bar"));
showDemoLogin();
