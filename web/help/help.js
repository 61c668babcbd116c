// The help pages the server draws (/kb/ and /kb/<slug>: server/knowledge_api.py): their own words
// (not the articles') in the visitor's language, chosen like the home page's and the console's
// (this browser's choice, else navigator.languages, else English: ../agent/locale.js), with the
// language menu. Without script the pages read in English. Words: web/sdk/i18n.js `help.*`.
import { browserPageLocale } from "../agent/locale.js";

browserPageLocale(document.getElementById("kb-bar"));
