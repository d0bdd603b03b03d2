#!/usr/bin/env node
// Validate AsyncAPI documents with the official parser (@asyncapi/parser: JSON Schema of the spec + its
// Spectral ruleset). Usage: node validate-asyncapi.cjs [--strict] FILE...
// Exit status: 0 valid, 1 invalid (any error; with --strict any warning too), 2 usage or setup problem.
// The parser is looked up in $ORDERFLOW_NODE_MODULES, else ${ORDERFLOW_CACHE:-~/.cache/orderflow}/node/node_modules
// (where install-asyncapi.sh puts it).
'use strict';
const os = require('os');
const path = require('path');
const { createRequire } = require('module');

const SEVERITY = ['error', 'warning', 'info', 'hint'];

function modulesDir() {
  if (process.env.ORDERFLOW_NODE_MODULES) return process.env.ORDERFLOW_NODE_MODULES;
  const cache = process.env.ORDERFLOW_CACHE || path.join(os.homedir(), '.cache', 'orderflow');
  return path.join(cache, 'node', 'node_modules');
}

async function main(argv) {
  const strict = argv.includes('--strict');
  const files = argv.filter((a) => a !== '--strict');
  if (files.length === 0) {
    console.error('usage: validate-asyncapi.cjs [--strict] FILE...');
    return 2;
  }
  let parserModule;
  try {
    parserModule = createRequire(path.join(modulesDir(), 'noop.js'))('@asyncapi/parser');
  } catch (e) {
    console.error(`@asyncapi/parser not found under ${modulesDir()}: run contracts/tools/install-asyncapi.sh`);
    return 2;
  }
  const { Parser, fromFile } = parserModule;
  const version = createRequire(path.join(modulesDir(), 'noop.js'))('@asyncapi/parser/package.json').version;
  const parser = new Parser();
  let failed = false;
  for (const file of files) {
    const { document, diagnostics } = await fromFile(parser, file).parse();
    let errors = 0;
    let warnings = 0;
    for (const d of diagnostics) {
      const level = SEVERITY[d.severity] || String(d.severity);
      if (d.severity === 0) errors += 1;
      if (d.severity === 1) warnings += 1;
      const where = (d.path || []).join('.') || '(document)';
      console.log(`${file}: ${level} ${d.code} at ${where}: ${d.message}`);
    }
    const bad = !document || errors > 0 || (strict && warnings > 0);
    const spec = document ? document.version() : '?';
    console.log(`${file}: ${bad ? 'INVALID' : 'valid'} AsyncAPI ${spec} ` +
      `(${errors} error(s), ${warnings} warning(s); @asyncapi/parser ${version}${strict ? ', strict' : ''})`);
    failed = failed || bad;
  }
  return failed ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => { console.error(e && e.stack ? e.stack : String(e)); process.exit(2); },
);
