import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { postfixFiles } from './postfix.ts';

// The lookup tables are checked with Postfix's own postmap, so a wrong regexp fails here, not in a 10-minute run.
const dir = mkdtempSync(join(tmpdir(), 'bench-postfix-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function files(mode: 'Direct' | 'Dual' | 'Split'): Record<string, string> {
  return postfixFiles({ root: '/tmp/pf', port: 2500, sinkA: 2601, sinkB: 2602, mode });
}

function query(content: string, key: string): string {
  const file = join(dir, `map-${Math.random().toString(36).slice(2)}`);
  writeFileSync(file, content);
  try {
    return execFileSync('postmap', ['-c', dir, '-q', key, `regexp:${file}`], { encoding: 'utf8' }).trim();
  } catch {
    return '(none)';
  }
}

describe('postfixFiles', () => {
  writeFileSync(join(dir, 'main.cf'), '');

  it('listens on the loopback port only and keeps its queue under the root', () => {
    const f = files('Direct');
    expect(f['master.cf']).toMatch(/^127\.0\.0\.1:2500 inet n - n - - smtpd$/m);
    expect(f['main.cf']).toContain('queue_directory = /tmp/pf/queue');
    expect(f['main.cf']).toContain('inet_interfaces = 127.0.0.1');
    expect(f['main.cf']).toContain('transport_maps = inline:{ bench.example=smtp:[127.0.0.1]:2601 }');
    expect(f['main.cf']).not.toContain('recipient_bcc_maps');
  });

  it.each([
    ['user@bench.example', 'user@copy.bench.example'],
    ['7known@bench.example', '7known@copy.bench.example'],
    ['user@other.example', '(none)'],
  ])('dual: bcc of %s is %s', (rcpt, copy) => {
    const f = files('Dual');
    expect(f['main.cf']).toContain('recipient_bcc_maps = regexp:/tmp/pf/etc/bcc');
    expect(f['main.cf']).toContain('copy.bench.example=smtp:[127.0.0.1]:2602');
    expect(query(f['bcc'] ?? '', rcpt)).toBe(copy);
  });

  it.each([
    ['known@bench.example', 'smtp:[127.0.0.1]:2601'],
    ['10known@bench.example', 'smtp:[127.0.0.1]:2601'],
    ['other@bench.example', 'smtp:[127.0.0.1]:2602'],
    ['probe3@bench.example', 'smtp:[127.0.0.1]:2602'],
  ])('split: %s goes to %s', (rcpt, next) => {
    expect(query(files('Split')['transport'] ?? '', rcpt)).toBe(next);
  });
});
