// The saved state on a real file system: a round trip, and files that are not a saved state (garbage, a folder, a
// file over the size bound) are ignored with a warning, never a failure to start.
import { mkdir, mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../test/support/wait.ts';
import { loadRemovedDomains, removedDomainsSaver } from './removed-domains-store.ts';

describe('removed-domains.json', () => {
  const dirs: string[] = [];
  const dir = async (): Promise<string> => {
    const d = await mkdtemp(join(tmpdir(), 'mailroute-removed-'));
    dirs.push(d);
    return d;
  };
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const warnings: string[] = [];
  const log = pino({ level: 'warn' }, { write: (l: string) => void warnings.push(l) });

  it('a saved state is loaded back', async () => {
    const d = await dir();
    expect(await loadRemovedDomains(d, log)).toBeUndefined();
    const state = { served: ['a.test'], removed: { 'b.test': '2026-12-07T01:00:00.000Z' } };
    removedDomainsSaver(d, log, { served: [], removed: {} })(state);
    await waitFor(async () => JSON.stringify(await loadRemovedDomains(d, log)) === JSON.stringify(state), {
      what: 'the state saved',
    });
  });

  it.each<[string, (file: string) => Promise<void>, RegExp]>([
    ['garbage', (f) => writeFile(f, '{"served": [1]'), /not valid/],
    ['a folder in its place', (f) => mkdir(f), /not a file/],
    [
      'a file over 16 MiB',
      (f) => writeFile(f, '').then(() => truncate(f, 16 * 1024 * 1024 + 1)),
      /not a file/,
    ],
  ])('%s is ignored with a warning', async (_, make, warning) => {
    const d = await dir();
    await make(join(d, 'removed-domains.json'));
    warnings.length = 0;
    expect(await loadRemovedDomains(d, log)).toBeUndefined();
    expect(warnings.join('\n')).toMatch(warning);
  });
});
