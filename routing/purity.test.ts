// routing/ is pure: no I/O modules and no clock (time is a parameter). index.ts is the one exception: it
// re-exports loadManifests from cli/manifests.ts for the relay. node:url is allowed for domainToASCII (IDNA, pure).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const dir = import.meta.dirname;
const sources = readdirSync(dir).filter(
  (f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && f !== 'index.ts' && f !== 'test-fixtures.ts',
);

describe('routing/ purity', () => {
  it.each(sources)('%s imports no I/O module and reads no clock', (file) => {
    const text = readFileSync(join(dir, file), 'utf8');
    const imports = [...text.matchAll(/from '([^']+)'/g)].map((m) => m[1]!);
    for (const m of imports) {
      expect(m, `${file} imports ${m}`).toMatch(/^(\.\/[a-z-]+\.ts|ajv|yaml|node:crypto|node:url)$/);
    }
    expect(text).not.toMatch(/Date\.now\(|new Date\(\)|performance\.now|process\./);
  });
});
