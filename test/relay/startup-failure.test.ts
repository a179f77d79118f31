// A relay that cannot start must not run: each listener and each source failing in turn, through the real CLI
// (bin/mailroute.js), ends the process with a non-zero exit and a message naming the flag, and the SMTP port never
// accepts a connection in the meantime (so no client is ever answered 250 by a relay that cannot deliver or be
// watched). The same for `mailroute demo` and `mailroute operator`.
import { spawn } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unreachableKubeconfig } from '../support/kubeconfig.ts';
import { accepts, freePort } from '../support/net.ts';
import { NODE, ROOT, spawnRelay, tempDir } from './relay-harness.ts';

/** A loopback port held by a listener that never answers (EADDRINUSE for whoever binds it next). */
async function busyPort(): Promise<{ port: number; server: Server }> {
  const server = createServer((s) => s.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const a = server.address();
  if (a === null || typeof a === 'string') throw new Error('no address');
  return { port: a.port, server };
}

/**
 * Runs the CLI until it exits (deadline 20 s) while probing smtpPort every 20 ms; returns the exit code, the output
 * and whether the SMTP port ever accepted a connection.
 */
async function runUntilExit(
  args: string[],
  smtpPort: number | undefined,
  cwd: string,
): Promise<{ code: number | null; out: string; smtpAccepted: boolean }> {
  const proc = spawn(NODE, [join(ROOT, 'bin/mailroute.js'), ...args], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MAILROUTE_LOG_LEVEL: 'warn' },
  });
  let out = '';
  proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (out += c.toString()));
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((r) =>
    proc.once('exit', (code) => {
      exitCode = code;
      r(code);
    }),
  );
  const killer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
  let smtpAccepted = false;
  while (exitCode === undefined) {
    if (smtpPort !== undefined && (await accepts(smtpPort))) smtpAccepted = true;
    await Promise.race([exited, new Promise((r) => setTimeout(r, 20))]);
  }
  clearTimeout(killer);
  return { code: await exited, out, smtpAccepted };
}

describe('start-up failures end the process before SMTP accepts anything', () => {
  let dir = '';
  let busy: { port: number; server: Server };
  const manifests = join(ROOT, 'examples/demo');
  beforeAll(async () => {
    dir = await tempDir('startup');
    busy = await busyPort();
    await writeFile(join(dir, 'a-file'), 'not a folder');
  });
  afterAll(async () => {
    busy.server.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const relayArgs = (
    smtp: number,
    over: { http?: string; admin?: string; listen?: string; spool?: string; source?: string[] },
  ): string[] => [
    'relay',
    ...(over.source ?? ['--manifests', manifests]),
    '--listen',
    over.listen ?? `127.0.0.1:${smtp}`,
    '--http',
    over.http ?? '127.0.0.1:0',
    '--admin',
    over.admin ?? '127.0.0.1:0',
    '--spool',
    over.spool ?? join(dir, `spool-${smtp}`),
  ];

  const cases: [string, (b: number) => Parameters<typeof relayArgs>[1], RegExp][] = [
    ['--http port busy', (b) => ({ http: `127.0.0.1:${b}` }), /--http 127\.0\.0\.1:\d+: .*EADDRINUSE/],
    ['--admin port busy', (b) => ({ admin: `127.0.0.1:${b}` }), /--admin 127\.0\.0\.1:\d+: .*EADDRINUSE/],
    [
      '--manifests folder missing',
      () => ({ source: ['--manifests', join(dir, 'no-such-folder')] }),
      /--manifests \S+no-such-folder: ENOENT/,
    ],
    [
      '--manifests is a file',
      () => ({ source: ['--manifests', join(dir, 'a-file')] }),
      /--manifests \S+a-file: not a folder/,
    ],
    [
      '--routing-file missing',
      () => ({ source: ['--routing-file', join(dir, 'no-such.json')] }),
      /--routing-file \S+no-such\.json: ENOENT/,
    ],
    [
      '--spool not writable (under a regular file)',
      () => ({ spool: join(dir, 'a-file', 'spool') }),
      /--spool \S+a-file\/spool: .*ENOTDIR/,
    ],
  ];
  for (const workers of ['1', '2']) {
    it.each(cases)(
      `relay (--workers ${workers}), %s: exit 1, SMTP never accepted`,
      async (_name, over, message) => {
        const smtp = await freePort();
        const r = await runUntilExit([...relayArgs(smtp, over(busy.port)), '--workers', workers], smtp, dir);
        expect(r.code, r.out).toBe(1);
        expect(r.out).toMatch(message);
        expect(r.smtpAccepted, r.out).toBe(false);
        expect(await accepts(smtp)).toBe(false);
      },
    );
  }

  it('relay, --listen port busy: exit 1, and the --http port it had bound is released', async () => {
    const http = await freePort();
    const r = await runUntilExit(
      relayArgs(busy.port, { listen: `127.0.0.1:${busy.port}`, http: `127.0.0.1:${http}` }),
      undefined,
      dir,
    );
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/--listen 127\.0\.0\.1:\d+: .*EADDRINUSE/);
    expect(await accepts(http)).toBe(false);
  });

  it('demo (npm start), --http port busy: exit 1, SMTP never accepted', async () => {
    const smtp = await freePort();
    const r = await runUntilExit(
      [
        'demo',
        '--listen',
        `127.0.0.1:${smtp}`,
        '--http',
        `127.0.0.1:${busy.port}`,
        '--admin',
        '127.0.0.1:0',
        '--mail-dir',
        join(dir, 'demo-mail'),
      ],
      smtp,
      dir,
    );
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/--http 127\.0\.0\.1:\d+: .*EADDRINUSE/);
    expect(r.smtpAccepted, r.out).toBe(false);
  });

  it('operator, --http port busy: exit 1', async () => {
    // Nothing is contacted before the HTTP listener is bound: a kubeconfig pointing nowhere is enough.
    const kubeconfig = join(dir, 'kubeconfig');
    await writeFile(kubeconfig, unreachableKubeconfig('https://127.0.0.1:1'));
    const r = await runUntilExit(
      ['operator', '--kubeconfig', kubeconfig, '--namespace', 'mail', '--http', `127.0.0.1:${busy.port}`],
      undefined,
      dir,
    );
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/EADDRINUSE/);
  });

  it('the test harness: a relay child that exits before it started fails spawnRelay at once, with its output', async () => {
    // spawnRelay used to wait out its 15 s for a child that had exited at once (a typo in a test's flags)
    const started = performance.now();
    const err = await spawnRelay(['--no-such-flag']).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/relay exited \(\d+\) before it started:[\s\S]*no-such-flag/);
    expect(performance.now() - started).toBeLessThan(10_000);
  });
});
