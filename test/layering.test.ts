// The layering of the top-level folders, checked on every import (static, `import type`, `export ... from` and
// dynamic `import()`), so that a wrong-way import fails `npm test` with the file and the module it named:
//
//   routing (pure core) <- lib (shared I/O helpers), contract (relay–operator wire format) <- relay | operator <- cli <- bin
//
// relay and operator never import each other; what they share is in contract/ (or lib/). Test files (*.test.ts)
// may also import test/ (harnesses, peers); test/, bench/ and scripts/ may import anything.
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');

/** Folder -> the other folders its production code may import. */
const MAY_IMPORT: Record<string, readonly string[]> = {
  routing: [],
  lib: ['routing'],
  contract: ['routing'],
  relay: ['routing', 'lib', 'contract'],
  operator: ['routing', 'lib', 'contract'],
  cli: ['routing', 'lib', 'contract', 'relay', 'operator'],
  bin: ['cli'],
};

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.(ts|js)$/.test(f) && !f.endsWith('.d.ts'))
    .map((f) => join(dir, f));
}

/** "relay/sources/x.ts imports operator/y.ts" for every relative import that leaves the allowed folders. */
function wrongWayImports(file: string, text: string): string[] {
  const folder = file.split(sep)[0] ?? '';
  const allowed = new Set([
    folder,
    ...(MAY_IMPORT[folder] ?? []),
    ...(file.endsWith('.test.ts') ? ['test'] : []),
  ]);
  const out: string[] = [];
  for (const { fileName: spec } of ts.preProcessFile(text, true, true).importedFiles) {
    if (!spec.startsWith('.')) continue;
    const target = relative(ROOT, resolve(ROOT, file, '..', spec));
    if (!allowed.has(target.split(sep)[0] ?? '')) out.push(`${file} imports ${target}`);
  }
  return out;
}

describe('layering', () => {
  it('finds a wrong-way import of each kind (the check can fail)', () => {
    const text = [
      "import { a } from '../../operator/x.ts';",
      "import type { B } from '../../cli/y.ts';",
      "export { c } from '../../operator/z.ts';",
      "const d = await import('../../operator/w.ts');",
      "import { e } from '../../contract/ok.ts';",
    ].join('\n');
    expect(wrongWayImports(join('relay', 'sources', 'x.ts'), text)).toEqual([
      'relay/sources/x.ts imports operator/x.ts',
      'relay/sources/x.ts imports cli/y.ts',
      'relay/sources/x.ts imports operator/z.ts',
      'relay/sources/x.ts imports operator/w.ts',
    ]);
  });

  it.each(Object.keys(MAY_IMPORT))('%s/ imports only the layers below it', (folder) => {
    const wrong = sources(folder).flatMap((f) => wrongWayImports(f, readFileSync(join(ROOT, f), 'utf8')));
    expect(wrong).toEqual([]);
  });
});
