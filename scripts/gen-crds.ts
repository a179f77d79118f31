// Writes crds/*.yaml from routing/crd-schema.ts (the one source of truth). Run with `npm run gen`.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crdFileName, renderCrdYaml } from '../routing/crds.ts';
import { CRD_KINDS } from '../routing/model.ts';

const dir = join(import.meta.dirname, '..', 'crds');
await mkdir(dir, { recursive: true });
for (const kind of CRD_KINDS) {
  const file = join(dir, crdFileName(kind));
  await writeFile(file, renderCrdYaml(kind));
  process.stdout.write(`wrote ${file}\n`);
}
