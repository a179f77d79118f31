// `mailroute demo`: the printed swaks and curl lines work as printed, and dual delivery stores one .eml per message
// under demo-mail/old and demo-mail/new. (The destination ports 2601/2602 are fixed by examples/demo.)
import { exec, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../support/wait.ts';
import { LOOPBACK_LISTENERS, NODE, ROOT, tempDir } from './relay-harness.ts';

const sh = promisify(exec);

describe('mailroute demo', () => {
  let dir = '';
  let stop: (() => void) | undefined;
  afterAll(async () => {
    stop?.();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('prints working instructions and delivers to both destinations', async () => {
    dir = await tempDir('demo');
    const mailDir = join(dir, 'demo-mail');
    const proc = spawn(
      NODE,
      [join(ROOT, 'bin/mailroute.js'), 'demo', ...LOOPBACK_LISTENERS, '--mail-dir', mailDir],
      {
        cwd: dir,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    stop = () => proc.kill('SIGKILL');
    let out = '';
    proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
    await waitFor(() => out.includes('Ctrl-C stops it'), {
      timeoutMs: 15_000,
      what: `the demo banner (output so far: ${out})`,
    });
    const swaks = /^\s*(swaks --server \S+ --from \S+ --to alice@example\.com)\s*$/m.exec(out)?.[1];
    const curl = /^\s*(printf .* \| curl .*)$/m.exec(out)?.[1];
    expect(swaks).toBeDefined();
    expect(curl).toBeDefined();
    // README.md and docs/relay.md show these lines (their blocks say `docs-check: tested-by` this file)
    for (const doc of ['README.md', 'docs/relay.md']) {
      const text = readFileSync(new URL(`../../${doc}`, import.meta.url), 'utf8');
      const asDocumented = (line: string): string => line.replace(/127\.0\.0\.1:\d+/, '127.0.0.1:2525');
      expect(text, doc).toContain(`${asDocumented(swaks!)}\n`);
      expect(text, doc).toContain(`${asDocumented(curl!)}\n`);
    }
    const s = await sh(swaks ?? 'false');
    expect(s.stdout).toMatch(/<- {2}250 2\.0\.0 queued as/);
    await sh(curl ?? 'false', { shell: '/bin/bash' });
    const count = async (leg: string): Promise<number> =>
      (await readdir(join(mailDir, leg)).catch(() => [])).filter((f) => f.endsWith('.eml')).length;
    await waitFor(async () => (await count('old')) === 2 && (await count('new')) === 2, {
      timeoutMs: 10_000,
      what: 'two .eml files in old and new',
    });
    proc.kill('SIGINT');
    expect(await exited).toBe(0);
    stop = undefined;
  });
});
