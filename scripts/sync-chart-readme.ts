// Rewrites the values table of charts/mailroute/README.md (run by `npm run gen:chart`).
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { valuesTable, withValuesTable } from './chart-readme.ts';

const chart = join(import.meta.dirname, '..', 'charts', 'mailroute');
const readmePath = join(chart, 'README.md');
const table = valuesTable(
  await readFile(join(chart, 'values.yaml'), 'utf8'),
  await readFile(join(chart, 'values.schema.json'), 'utf8'),
);
await writeFile(readmePath, withValuesTable(await readFile(readmePath, 'utf8'), table));
process.stdout.write(`wrote ${readmePath}\n`);
