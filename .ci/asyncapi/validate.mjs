// Parses AsyncAPI documents with the official parser and fails on any error or warning
// diagnostic: `node validate.mjs doc.json [more.json ...]`.
import { readFile } from 'node:fs/promises';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';

const parser = new Parser();
let failed = false;
const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node validate.mjs <document>...');
  process.exit(2);
}
for (const file of files) {
  const text = await readFile(file, 'utf8');
  const { document, diagnostics } = await parser.parse(text, { source: file });
  const serious = diagnostics.filter(
    (d) => d.severity === DiagnosticSeverity.Error || d.severity === DiagnosticSeverity.Warning,
  );
  for (const d of diagnostics) {
    const level = ['error', 'warning', 'info', 'hint'][d.severity] ?? d.severity;
    console.error(`${file}: ${level} ${d.code} at /${d.path.join('/')}: ${d.message}`);
  }
  if (document === undefined || serious.length > 0) {
    failed = true;
    console.error(`${file}: not a valid AsyncAPI document (${serious.length} error(s) or warning(s))`);
  } else {
    console.log(`${file}: valid AsyncAPI ${document.version()}, ${document.channels().length} channels, ${document.operations().length} operations`);
  }
}
process.exit(failed ? 1 : 0);
