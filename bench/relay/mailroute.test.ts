import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mailrouteManifests } from './mailroute.ts';

// The manifests are explained by `mailroute route` itself, so they stay equivalent to the Postfix configuration.
const repo = resolve(import.meta.dirname, '..', '..');
const dir = mkdtempSync(join(tmpdir(), 'bench-mailroute-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Plan {
  verdict: string;
  legs: { server: string; port: number; recipient: string; role: string }[];
}

function route(mode: 'Direct' | 'Dual' | 'Split', to: string): Plan {
  const file = join(dir, `${mode}.yaml`);
  writeFileSync(file, mailrouteManifests({ root: dir, sinkA: 2601, sinkB: 2602, mode, recipients: 10 }));
  const out = execFileSync(
    join(repo, 'node_modules/.bin/node'),
    [join(repo, 'bin/mailroute.js'), 'route', '-f', file, '--to', to, '-o', 'json'],
    {
      encoding: 'utf8',
    },
  );
  return JSON.parse(out) as Plan;
}

describe('mailrouteManifests', () => {
  it.each([
    ['Direct', 'user@bench.example', [[2601, 'user@bench.example', 'primary']]],
    [
      'Dual',
      'user@bench.example',
      [
        [2601, 'user@bench.example', 'primary'],
        [2602, 'user@copy.bench.example', 'copy'],
      ],
    ],
    ['Split', 'known@bench.example', [[2601, 'known@bench.example', 'primary']]],
    ['Split', '10known@bench.example', [[2601, '10known@bench.example', 'primary']]],
    ['Split', 'other@bench.example', [[2602, 'other@bench.example', 'primary']]],
  ] as const)('%s routes %s like the Postfix peer', (mode, to, legs) => {
    const plan = route(mode, to);
    expect(plan.verdict).toBe('accept');
    expect(plan.legs.map((l) => [l.port, l.recipient, l.role])).toEqual(legs);
  });

  it('refuses other domains (no open relay on either side)', () => {
    expect(route('Direct', 'user@elsewhere.example').verdict).toBe('reject');
  });
});
