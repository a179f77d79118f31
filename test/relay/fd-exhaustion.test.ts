// The relay out of file descriptors: a flood of idle connections takes every descriptor its limit allows (a small
// RLIMIT_NOFILE, set on the running child with prlimit, stands for a host or container whose limit is low), while
// clients keep sending mail. Whatever happens during the flood, the process stays up, every message answered 250
// reaches both legs, and once the flood ends the relay takes mail again.
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { RawSmtp } from './raw-client.ts';
import {
  dualDomain,
  httpGet,
  loopbackRelayArgs,
  metricValue,
  spawnRelay,
  tempDir,
  writeManifests,
  type RelayChild,
} from './relay-harness.ts';

const run = promisify(execFile);

/** The admin API's port, from the relay's start line. */
function adminPort(r: RelayChild): number {
  const line = r.logs.find((l) => l.includes('"relay started"')) ?? '';
  const admin = (JSON.parse(line) as { admin?: string }).admin ?? '';
  return Number(admin.slice(admin.lastIndexOf(':') + 1));
}

/** One message over a raw session: the final reply, or what went wrong before it ('' when the server closed). */
async function sendOne(port: number, i: number): Promise<{ reply: string; id: string }> {
  const id = `fd-${i}-${Math.random().toString(36).slice(2)}`;
  let c: RawSmtp;
  try {
    c = await RawSmtp.connect(port);
  } catch (err) {
    return { reply: `connect: ${(err as Error).message}`, id };
  }
  try {
    const greeting = await c.reply(5000);
    if (!greeting.startsWith('220')) return { reply: greeting, id };
    for (const line of ['EHLO client.test', 'MAIL FROM:<s@origin.test>', 'RCPT TO:<u@fd.test>']) {
      const r = await c.cmd(line);
      if (!r.startsWith('250')) return { reply: r, id };
    }
    const go = await c.cmd('DATA');
    if (!go.startsWith('354')) return { reply: go, id };
    c.write(`Subject: ${id}\r\nMessage-ID: <${id}@origin.test>\r\n\r\nhello\r\n.\r\n`);
    return { reply: await c.reply(10_000), id };
  } catch (err) {
    return { reply: `error: ${(err as Error).message}`, id };
  } finally {
    c.close();
  }
}

describe('the relay out of file descriptors', () => {
  let primary: SmtpPeer;
  let copy: SmtpPeer;
  let relay: RelayChild;
  beforeAll(async () => {
    primary = await startSmtpPeer('primary');
    copy = await startSmtpPeer('copy');
    const dir = await tempDir('fd');
    await writeManifests(join(dir, 'manifests'), {
      'd.yaml': dualDomain('fd.test', primary.port, copy.port),
    });
    // a leg deferred for want of a descriptor is retried within the test's wait
    relay = await spawnRelay(loopbackRelayArgs(dir, ['--log-level', 'info', '--retry-schedule', '1s']));
  });
  afterAll(async () => {
    relay?.kill('SIGKILL');
    await primary?.close();
    await copy?.close();
  });

  it('stays up under a flood that takes every descriptor, loses no message answered 250, and takes mail after it', async () => {
    // warm up: both legs connected once, so the pools and the spool's files exist before the limit
    expect((await sendOne(relay.smtpPort, 0)).reply).toMatch(/^250 /);
    await waitFor(() => primary.messages.length === 1 && copy.messages.length === 1, { what: 'the warm-up' });
    const open = (await readdir(`/proc/${relay.pid}/fd`)).length;
    const limit = open + 40;
    await run('prlimit', [`--pid=${relay.pid}`, `--nofile=${limit}:${limit}`]);

    // sessions that reached DATA before the flood, with bodies to send during it: small ones (the accept log takes
    // them without a descriptor of their own) and large ones (each needs a file of its own)
    const inFlight: { c: RawSmtp; id: string; bytes: number }[] = [];
    for (let i = 0; i < 4; i++) {
      const c = await RawSmtp.connect(relay.smtpPort);
      await c.begin('s@origin.test', ['u@fd.test']);
      expect(await c.cmd('DATA')).toMatch(/^354/);
      inFlight.push({ c, id: `fd-inflight-${i}`, bytes: i % 2 === 0 ? 1024 : 3 * 1024 * 1024 });
    }

    // the flood: three times the descriptors left, each connection idle after its greeting; then more at the HTTP
    // and admin listeners, which accept into a process that has no descriptor left
    const flood: RawSmtp[] = [];
    for (let i = 0; i < 120; i++) {
      const c = await RawSmtp.connect(relay.smtpPort).catch(() => undefined);
      if (c) flood.push(c);
    }
    for (const port of [relay.httpPort, adminPort(relay)])
      for (let i = 0; i < 20; i++) {
        const c = await RawSmtp.connect(port).catch(() => undefined);
        if (c) flood.push(c);
      }
    await waitFor(async () => (await readdir(`/proc/${relay.pid}/fd`)).length >= limit - 1, {
      what: 'the relay at its descriptor limit',
    });
    expect(relay.proc.exitCode, 'the relay exited during the flood').toBeNull();
    // mail during the flood: refused, failed or accepted, but never accepted and lost
    const during = await Promise.all(Array.from({ length: 10 }, (_, i) => sendOne(relay.smtpPort, 100 + i)));
    const line = `${'x'.repeat(998)}\r\n`;
    for (const f of inFlight) {
      f.c.write(`Subject: ${f.id}\r\n\r\n`);
      for (let sent = 0; sent < f.bytes; sent += line.length) f.c.write(line);
      f.c.write('.\r\n');
    }
    const inFlightReplies = await Promise.all(
      inFlight.map(async (f) => ({
        id: f.id,
        reply: await f.c.reply(20_000).catch((e: Error) => e.message),
      })),
    );
    for (const f of inFlight) f.c.close();

    for (const c of flood) c.close();
    await waitFor(async () => (await readdir(`/proc/${relay.pid}/fd`)).length < limit - 20, {
      timeoutMs: 20_000,
      what: 'the flood to be gone',
    });
    const after = await Promise.all(Array.from({ length: 10 }, (_, i) => sendOne(relay.smtpPort, 200 + i)));
    expect(after.map((r) => r.reply.slice(0, 4))).toEqual(Array(10).fill('250 '));

    const accepted = [...during, ...inFlightReplies, ...after]
      .filter((r) => r.reply.startsWith('250 '))
      .map((r) => r.id);
    const subjects = (peer: SmtpPeer): Set<string> =>
      new Set(peer.messages.map((m) => /Subject: (\S+)/.exec(m.raw.toString('latin1'))?.[1] ?? ''));
    await waitFor(() => accepted.every((id) => subjects(primary).has(id) && subjects(copy).has(id)), {
      timeoutMs: 30_000,
      what: 'every message answered 250 on both legs',
    });
    expect(relay.proc.exitCode).toBeNull();
    expect((await httpGet(relay.httpPort, '/healthz')).status).toBe(200);
    console.log(
      `descriptor limit ${limit} (${open} open before): ${flood.length} flood connections; during: ${during
        .map((r) => r.reply.slice(0, 3) || 'closed')
        .join(' ')}; sessions in DATA: ${inFlightReplies.map((r) => r.reply).join(' | ')}; after: 10 x 250`,
    );
  });

  it('says at start when the descriptor limit leaves no room for the sessions it admits', async () => {
    const dir = await tempDir('fd-limit');
    await writeManifests(join(dir, 'manifests'), {
      'd.yaml': dualDomain('fd.test', primary.port, copy.port),
    });
    const low = await spawnRelay(loopbackRelayArgs(dir, ['--max-connections', '1000']), {}, [
      'prlimit',
      '--nofile=512:512',
    ]);
    try {
      const line = low.logs.find((l) => l.includes('the open files limit'));
      expect(line).toBeDefined();
      expect(JSON.parse(line ?? '{}')).toMatchObject({
        level: 'warn',
        openFiles: { soft: 512, hard: 512 },
        maxConnections: 1000,
      });
      expect(line).toContain('raise the hard limit to at least 1256');
      // what an alert compares the open descriptors with
      const text = (await httpGet(low.httpPort, '/metrics')).body;
      expect(metricValue(text, 'mailroute_process_max_fds')).toBe(512);
      expect(metricValue(text, 'mailroute_process_open_fds')).toBeGreaterThan(0);
    } finally {
      low.kill('SIGKILL');
    }
    // and a limit with room says nothing
    const roomy = await spawnRelay(loopbackRelayArgs(dir, ['--max-connections', '100']), {}, [
      'prlimit',
      '--nofile=512:512',
    ]);
    try {
      expect(roomy.logs.filter((l) => l.includes('the open files limit'))).toEqual([]);
    } finally {
      roomy.kill('SIGKILL');
    }
  });
});
