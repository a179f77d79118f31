// SIGTERM: new connections get 421 while a session in progress finishes its message (250), the process exits 0
// once it is done, and what is queued stays in the spool for the next start.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../support/wait.ts';
import { RawSmtp } from './raw-client.ts';
import {
  dualDomain,
  httpGet,
  loopbackRelayArgs,
  spawnRelay,
  tempDir,
  writeManifests,
  type RelayChild,
} from './relay-harness.ts';

describe('graceful shutdown', () => {
  let dir: string;
  const children: RelayChild[] = [];
  beforeAll(async () => {
    dir = await tempDir('shutdown');
    // Destinations on port 1: nothing listens there, so accepted mail stays queued.
    await writeManifests(join(dir, 'manifests'), {
      'd.yaml': dualDomain('stop.test', 1, 1, { mode: 'Direct' }),
    });
  });
  afterAll(() => {
    for (const c of children) c.kill('SIGKILL');
  });
  const args = (): string[] => loopbackRelayArgs(dir, ['--shutdown-timeout', '10s']);

  it('answers 421 to new connections, lets the session in progress finish, keeps the queue', async () => {
    const relay = await spawnRelay(args());
    children.push(relay);
    const inProgress = await RawSmtp.connect(relay.smtpPort);
    await inProgress.begin('s@origin.test', ['a@stop.test']);
    const idle = await RawSmtp.connect(relay.smtpPort);
    expect(await idle.reply()).toMatch(/^220/);
    expect(await idle.cmd('EHLO idle.test')).toMatch(/^250/);

    relay.kill('SIGTERM');
    // An idle session is told 421 and closed.
    expect(await idle.reply()).toMatch(/^421 4\.3\.2 /);
    // New connections: 421 while draining.
    const fresh = await waitFor(
      async () => {
        const c = await RawSmtp.connect(relay.smtpPort);
        const greeting = await c.reply();
        c.close();
        return greeting.startsWith('421') ? greeting : undefined;
      },
      { what: 'a 421 greeting' },
    );
    expect(fresh).toMatch(/^421 4\.3\.2 /);
    expect((await httpGet(relay.httpPort, '/readyz')).status).toBe(503);

    // The session in progress completes its message.
    expect(await inProgress.cmd('DATA')).toMatch(/^354/);
    inProgress.write('Subject: during shutdown\r\n\r\nkept\r\n.\r\n');
    const final = await inProgress.reply();
    expect(final).toMatch(/^250 2\.0\.0 queued as /);
    expect(await inProgress.cmd('QUIT')).toMatch(/^221/);
    inProgress.close();
    expect(await relay.exited).toBe(0);

    const id = final.split(' ').pop() ?? '';
    // With --workers N (default: one per CPU) worker i > 0 spools under spool/w<i>/ (relay/spool/adopt.ts).
    const folders = [
      'queue',
      ...(await readdir(join(dir, 'spool'))).filter((n) => /^w\d+$/.test(n)).map((w) => join(w, 'queue')),
    ];
    const files = (await Promise.all(folders.map((f) => readdir(join(dir, 'spool', f))))).flat();
    expect(files).toContain(`${id}.msg`);

    // The next start picks it up.
    const again = await spawnRelay(args());
    children.push(again);
    const started = again.logs.find((l) => l.includes('"relay started"')) ?? '';
    expect(JSON.parse(started)).toMatchObject({ queued: 1 });
    again.kill('SIGTERM');
    expect(await again.exited).toBe(0);
  });
});
