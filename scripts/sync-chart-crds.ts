// Writes charts/mailroute/templates/crds/*.yaml from crds/*.yaml (run by `npm run gen:chart`; `npm run gen` first
// regenerates crds/ from routing/crd-schema.ts). The chart's drift test (test/helm/chart.test.ts) fails when the
// chart's CRDs differ from crds/.
import { readdir, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chartCrdTemplate } from './chart-crds.ts';

const root = join(import.meta.dirname, '..');
const from = join(root, 'crds');
const to = join(root, 'charts', 'mailroute', 'templates', 'crds');
await mkdir(to, { recursive: true });
const files = (await readdir(from)).filter((f) => f.endsWith('.yaml')).sort();
for (const old of await readdir(to)) if (!files.includes(old)) await rm(join(to, old));
for (const f of files) {
  await writeFile(join(to, f), chartCrdTemplate(f, await readFile(join(from, f), 'utf8')));
  process.stdout.write(`wrote ${join(to, f)}\n`);
}
