// routing/ is pure: no I/O modules and no clock (time is a parameter). node:url is allowed for domainToASCII (IDNA,
// pure). contract/ (the relay–operator wire format) is pure too: it may use the routing core and node:zlib (the
// routing shards are gzip). Which folder may import which: test/layering.test.ts.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const pureFiles = (dir: string): string[] =>
  readdirSync(dir).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && f !== 'test-fixtures.ts');

const PURE = [
  {
    name: 'routing',
    dir: import.meta.dirname,
    allowed: /^(\.\/[a-z-]+\.ts|ajv|yaml|node:crypto|node:url)$/,
  },
  {
    name: 'contract',
    dir: join(import.meta.dirname, '..', 'contract'),
    allowed: /^(\.\/[a-z-]+\.ts|\.\.\/routing\/[a-z-]+\.ts|node:zlib)$/,
  },
];

describe.each(PURE)('$name/ purity', ({ dir, allowed }) => {
  it.each(pureFiles(dir))('%s imports no I/O module and reads no clock', (file) => {
    const text = readFileSync(join(dir, file), 'utf8');
    const imports = [...text.matchAll(/from '([^']+)'/g)].map((m) => m[1]!);
    for (const m of imports) expect(m, `${file} imports ${m}`).toMatch(allowed);
    expect(text).not.toMatch(/Date\.now\(|new Date\(\)|performance\.now|process\./);
  });
});
