// What the SDK's declarations promise, as JSON, for tests/browser/test_sdk_embed.py to check against
// the real modules in Chromium: per module, its value exports (classes, functions, constants),
// and each class's (non-optional) instance and static members.
//   node tests/ts/declared.mjs  ->  {"segue.js": {"exports": [...], "classes": {"SegueCustomer": {"instance": [...], "static": [...]}}}, ...}
import ts from "typescript";
import { fileURLToPath } from "node:url";
import path from "node:path";

const sdk = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../web/sdk");
const modules = ["segue", "call", "call-ui", "widget", "i18n", "format"];

const files = modules.map((m) => path.join(sdk, `${m}.d.ts`));
const program = ts.createProgram(files, { strict: true, noEmit: true, target: ts.ScriptTarget.ES2022, lib: ["lib.es2022.d.ts", "lib.dom.d.ts"] });
const checker = program.getTypeChecker();

function memberNames(type) {
  return checker
    .getPropertiesOfType(type)
    .filter((p) => !(p.flags & ts.SymbolFlags.Optional)) // may be absent at run time (SegueError.field)
    .map((p) => p.getName())
    .filter((n) => !n.startsWith("__") && n !== "prototype")
    .sort();
}

const out = {};
for (const [i, file] of files.entries()) {
  const source = program.getSourceFile(file);
  const moduleSymbol = checker.getSymbolAtLocation(source);
  const entry = { exports: [], classes: {} };
  for (let symbol of checker.getExportsOfModule(moduleSymbol)) {
    const typeOnly = symbol.declarations?.some((d) => ts.isTypeOnlyExportDeclaration?.(d) || (ts.isExportSpecifier(d) && (d.isTypeOnly || d.parent.parent.isTypeOnly)));
    if (symbol.flags & ts.SymbolFlags.Alias) symbol = checker.getAliasedSymbol(symbol);
    const name = symbol.getName();
    if (typeOnly || !(symbol.flags & ts.SymbolFlags.Value)) continue;
    entry.exports.push(name);
    if (symbol.flags & ts.SymbolFlags.Class) {
      const decl = symbol.valueDeclaration;
      entry.classes[name] = {
        instance: memberNames(checker.getDeclaredTypeOfSymbol(symbol)),
        static: memberNames(checker.getTypeOfSymbolAtLocation(symbol, decl)),
      };
    }
  }
  entry.exports.sort();
  out[`${modules[i]}.js`] = entry;
}
// every event name an Emitter of the SDK is declared to emit (the type arguments' keys)
const EVENT_MAPS = { "segue.js": ["ConversationEvents", "CustomerEvents", "AgentEvents"], "call.js": ["CallEvents", "MonitorEvents"] };
for (const [file, names] of Object.entries(EVENT_MAPS)) {
  const moduleSymbol = checker.getSymbolAtLocation(program.getSourceFile(path.join(sdk, file.replace(".js", ".d.ts"))));
  const exported = new Map(checker.getExportsOfModule(moduleSymbol).map((s) => [s.getName(), s]));
  const events = new Set();
  for (const name of names) {
    for (const p of checker.getPropertiesOfType(checker.getDeclaredTypeOfSymbol(exported.get(name)))) events.add(p.getName());
  }
  out[file].events = [...events].sort();
}
const problems = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
if (problems.length) {
  console.error(problems.join("\n"));
  process.exit(1);
}
console.log(JSON.stringify(out, null, 1));
