// Disk full: the spool of the real relay process sits on a 2 MiB tmpfs (mount -t tmpfs -o size=2m, as root). Both
// destinations are down, so everything accepted stays on the disk until it is full. Proves:
// - when the message cannot be stored the answer is 451/452 (4xx), never 250 (a 512 KiB message on a full disk);
// - the relay stays up; a kill -9 while the disk is full and a restart on the same spool quarantine nothing;
// - every message that was answered 250 is delivered on both legs byte for byte once the destinations are back;
// - when the queue has drained (space returns) a new message is accepted (250) and delivered.
// When mount is not permitted (not root) the same checks run in-process through the spool's injected file-system
// seam (ENOSPC beyond a 2 MiB byte budget), without the kill -9 step; the figures line says which variant ran.
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultSpoolFs, type SpoolFs } from '../../relay/spool/spool.ts';
import { spoolFsWith } from '../support/spool-fs.ts';
import { startRelay, type InProcessRelay } from '../relay/relay-harness.ts';
import { code } from '../relay/raw-client.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import {
  adminPort,
  dualDomain,
  queuedMessages,
  quarantinedFiles,
  queueTotal,
  relayArgs,
  report,
  run,
  sendRaw,
  spawnRelay,
  tempDir,
  writeManifests,
  type RelayChild,
} from './support.ts';

/** One message: header and base64 lines (no line starts with a dot), CRLF throughout. */
function message(id: string, kib: number): Buffer {
  const b64 = randomBytes(kib * 768).toString('base64');
  const lines = b64.match(/.{1,76}/g) ?? [];
  return Buffer.from(
    `Subject: ${id}\r\nMessage-ID: <${id}@disk.test>\r\n\r\n${lines.join('\r\n')}\r\n`,
    'latin1',
  );
}

const sendOne = (port: number, body: Buffer): Promise<string> => sendRaw(port, 'a@disk.test', body);

/** Fallback only (no mount permission): a spool file system with a byte budget, ENOSPC beyond it. */
function budgetFs(budget: number): SpoolFs {
  const sizes = new Map<string, number>();
  let used = 0;
  const grow = (p: string, n: number): void => {
    if (used + n > budget) {
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    }
    used += n;
    sizes.set(p, (sizes.get(p) ?? 0) + n);
  };
  return spoolFsWith(
    (p, flags, fh) => {
      // a file created (O_CREAT: a new message file) or opened with 'w' starts empty; the bulk descriptor of a large
      // body (O_WRONLY alone) writes on into the file it was opened on
      const empties = typeof flags === 'number' ? (flags & fsConstants.O_CREAT) !== 0 : flags.startsWith('w');
      if (empties) {
        used -= sizes.get(p) ?? 0;
        sizes.set(p, 0);
      }
      return {
        write: async (d) => {
          grow(p, d.length);
          return fh.write(d);
        },
        writev: async (bufs, at) => {
          grow(
            p,
            bufs.reduce((n, b) => n + b.length, 0),
          );
          return fh.writev(bufs, at);
        },
      };
    },
    {
      async rename(a, b) {
        await defaultSpoolFs.rename(a, b);
        const n = sizes.get(a);
        if (n === undefined) return;
        used -= sizes.get(b) ?? 0;
        sizes.set(b, n);
        sizes.delete(a);
      },
      async unlink(p) {
        await defaultSpoolFs.unlink(p);
        used -= sizes.get(p) ?? 0;
        sizes.delete(p);
      },
    },
  );
}

/** The relay under test: a spawned process on the tmpfs spool, or (fallback) an in-process relay on budgetFs. */
interface Target {
  smtpPort: number;
  httpPort: number;
  adminPort: number;
  spoolDir: string;
  alive(): boolean;
  /** kill -9 and start again on the same spool; undefined in the fallback (no process to kill). */
  restart?: () => Promise<{ queued: number }>;
}

describe('disk full on the spool', () => {
  let primary: SmtpPeer;
  let copy: SmtpPeer;
  let dir: string;
  let spool: string;
  let mounted = false;
  let inProcess: InProcessRelay | undefined;
  const children: RelayChild[] = [];

  beforeAll(async () => {
    primary = await startSmtpPeer('primary');
    copy = await startSmtpPeer('copy');
    dir = await tempDir('rel-disk');
    spool = join(dir, 'spool');
    await mkdir(spool, { recursive: true });
    await writeManifests(join(dir, 'manifests'), {
      'd.yaml': dualDomain('disk.test', primary.port, copy.port),
    });
    // MAILROUTE_DISK_FULL_FALLBACK=1 forces the fallback (to test it where mount works).
    if (process.env['MAILROUTE_DISK_FULL_FALLBACK'] === '1') return;
    try {
      await run('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', spool]);
      mounted = true;
    } catch {
      mounted = false;
    }
  });
  afterAll(async () => {
    for (const c of children) {
      if (c.proc.exitCode === null) {
        c.kill('SIGKILL');
        await c.exited;
      }
    }
    await inProcess?.close();
    if (mounted) await run('umount', ['-l', spool]).catch(() => undefined);
    await primary?.close();
    await copy?.close();
  });

  it('answers 4xx and never 250 when it cannot store; nothing queued is corrupted; recovers when space returns', async () => {
    await primary.down();
    await copy.down();
    let target: Target;
    if (mounted) {
      let child = await spawnRelay(relayArgs(dir));
      children.push(child);
      target = {
        get smtpPort() {
          return child.smtpPort;
        },
        get httpPort() {
          return child.httpPort;
        },
        get adminPort() {
          return adminPort(child);
        },
        spoolDir: spool,
        alive: () => child.proc.exitCode === null,
        restart: async () => {
          child.kill('SIGKILL');
          await child.exited;
          child = await spawnRelay(relayArgs(dir));
          children.push(child);
          const line = child.logs.find((l) => l.includes('"relay started"')) ?? '{}';
          return { queued: (JSON.parse(line) as { queued?: number }).queued ?? -1 };
        },
      };
    } else {
      inProcess = await startRelay({ 'd.yaml': dualDomain('disk.test', primary.port, copy.port) }, [], {
        spoolFs: budgetFs(2 * 1024 * 1024),
      });
      const r = inProcess;
      target = {
        smtpPort: r.relay.smtp.port,
        httpPort: r.relay.http.port,
        adminPort: r.relay.admin.port,
        spoolDir: r.spoolDir,
        alive: () => true,
      };
    }
    const variant = mounted
      ? 'tmpfs 2 MiB, real process'
      : 'FALLBACK: injected spool fs, 2 MiB budget, in-process';

    const acked = new Map<string, Buffer>();
    const refusals: string[] = [];
    let attempts = 0;
    // Fill the disk: 96 KiB messages until the first refusal (2 MiB holds about 20).
    while (refusals.length === 0 && attempts < 60) {
      const id = `d-${++attempts}`;
      const body = message(id, 96);
      const r = await sendOne(target.smtpPort, body);
      if (code(r) === 250) acked.set(id, body);
      else refusals.push(r);
    }
    expect(refusals.length, 'a refusal before 60 messages of 96 KiB on 2 MiB').toBe(1);
    // The disk is full: a 512 KiB message cannot fit, whatever the queue does meanwhile.
    for (let i = 0; i < 3; i++) {
      const id = `big-${i}`;
      const r = await sendOne(target.smtpPort, message(id, 512));
      expect(code(r), `reply to ${id}: ${r}`).not.toBe(250);
      refusals.push(r);
    }
    for (const r of refusals) expect(r).toMatch(/^45[12] 4\.3\.\d /);
    expect(target.alive()).toBe(true);
    // The queue gauge is refreshed by the delivery engine: wait for it to count every accepted message.
    const queuedWhileFull = await waitFor(
      async () => {
        const n = await queuedMessages(target.httpPort);
        return n === acked.size ? n : undefined;
      },
      { timeoutMs: 10_000, what: `mailroute_queue_messages = ${acked.size}` },
    );

    // kill -9 while the disk is full, restart on the same (full) spool: recovery finds every message.
    if (target.restart) {
      const started = await target.restart();
      expect(started.queued).toBe(acked.size);
    }

    // Space returns as the destinations come back and the queue drains.
    await primary.up();
    await copy.up();
    const t0 = Date.now();
    const intact = (peer: SmtpPeer, id: string, body: Buffer): boolean =>
      peer.messages.some(
        (m) => m.raw.length >= body.length && m.raw.subarray(m.raw.length - body.length).equals(body),
      );
    await waitFor(() => [...acked].every(([id, b]) => intact(primary, id, b) && intact(copy, id, b)), {
      timeoutMs: 30_000,
      intervalMs: 100,
      what: 'every acknowledged message delivered intact on both legs',
    });
    await waitFor(async () => (await queueTotal(target.adminPort)) === 0, {
      timeoutMs: 20_000,
      what: 'queue drained',
    });
    const drainMs = Date.now() - t0;
    const quarantined = await quarantinedFiles(target.spoolDir);
    expect(quarantined).toEqual([]);

    const after = message('after-1', 96);
    expect(await sendOne(target.smtpPort, after)).toMatch(/^250 /);
    await waitFor(() => intact(primary, 'after-1', after), {
      timeoutMs: 10_000,
      what: 'the message after recovery',
    });

    report('disk full', {
      variant,
      accepted: acked.size,
      refusals: refusals.map((r) => r.slice(0, 9)),
      queuedWhileFull,
      quarantined: quarantined.length,
      drainMs,
    });
  });
});
