// The spool's volume turns read-only under a running relay: an I/O error on ext4 mounted errors=remount-ro (the
// default of many distributions, and what a cloud disk that hiccups brings). The test mounts a small ext4 image on a
// loop device as the spool of a real relay process and makes the kernel take it read-only at once, as an I/O error
// would (/sys/fs/ext4/<dev>/trigger_fs_error). Ten dual messages are queued, both destinations down; then the volume
// goes read-only and the primary comes back, the secondary stays down. Proves:
// - no message is delivered twice while the spool cannot record it: the relay keeps the results in memory and writes
//   them again, and pauses delivery (before: the primary got every message again at every retry step, 1 s here and
//   1 min by default, for as long as the volume stayed read-only);
// - new mail gets 4xx, never 250; /readyz says why; mailroute_delivery_paused is 1 and mailroute_results_unrecorded
//   counts the messages whose results are kept;
// - SIGTERM ends the relay within its shutdown timeout (the kept results are given up: they repeat at the next start);
// - after the admin's fix (unmount, e2fsck, mount: what a pod restart on the volume does), every message is delivered
//   on both legs and the queue drains, nothing quarantined; new mail flows. A delivery the relay could not record is
//   repeated once (at-least-once), no more.
// Where mount is not permitted (not root, no loop device) the same checks run in-process on a spool file system that
// refuses every write with EROFS while a switch is on; turning it off is the fix (delivery resumes at the next write
// of the kept results), and each message is delivered exactly once. The figures line says which variant ran.
import { constants as fsConstants } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultSpoolFs, type SpoolFs } from '../../relay/spool/spool.ts';
import { withCalls } from '../support/spool-fs.ts';
import { startRelay, type InProcessRelay } from '../relay/relay-harness.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import {
  adminPort,
  dualDomain,
  metricSum,
  metrics,
  quarantinedFiles,
  queueTotal,
  relayArgs,
  report,
  run,
  sendRaw,
  spawnRelay,
  subjectCounts,
  tempDir,
  writeManifests,
  type RelayChild,
} from './support.ts';
import { NODE, ROOT } from '../relay/relay-harness.ts';

const MESSAGES = 10;
const TAG = /^ro-\d+$/;

const sendOne = (port: number, subject: string): Promise<string> =>
  sendRaw(
    port,
    'a@ro.test',
    Buffer.from(`Subject: ${subject}\r\nMessage-ID: <${subject}@ro.test>\r\n\r\nbody of ${subject}\r\n`),
  );

function erofs(): Error {
  return Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' });
}

/** Fallback only (no mount permission): the real spool file system, every write refused with EROFS while `ro.on`. */
function switchableFs(ro: { on: boolean }): SpoolFs {
  const refuse = async (): Promise<never> => Promise.reject(erofs());
  const writes = (flags: string | number): boolean =>
    typeof flags === 'number'
      ? (flags & (fsConstants.O_WRONLY | fsConstants.O_RDWR)) !== 0
      : /[wa+]/.test(flags);
  return {
    ...defaultSpoolFs,
    async open(p, flags, mode) {
      if (ro.on && writes(flags)) return refuse();
      const fh = await defaultSpoolFs.open(p, flags, mode);
      return withCalls(fh, {
        write: (d) => (ro.on ? refuse() : fh.write(d)),
        writev: (d, at) => (ro.on ? refuse() : fh.writev(d, at)),
        chmod: (m) => (ro.on ? refuse() : fh.chmod(m)),
        sync: () => (ro.on ? refuse() : fh.sync()),
      });
    },
    rename: (a, b) => (ro.on ? refuse() : defaultSpoolFs.rename(a, b)),
    unlink: (p) => (ro.on ? refuse() : defaultSpoolFs.unlink(p)),
    rm: (p) => (ro.on ? refuse() : defaultSpoolFs.rm(p)),
    mkdir: (p, o) => (ro.on ? refuse() : defaultSpoolFs.mkdir(p, o)),
  };
}

/** The relay under test, and how its spool volume goes read-only and is fixed. */
interface Target {
  readonly variant: string;
  smtpPort(): number;
  httpPort(): number;
  adminPort(): number;
  logs(): readonly string[];
  spoolDir: string;
  /** The volume refuses every write from now on. */
  readOnly(): Promise<void>;
  /**
   * The admin's fix. Real volume: SIGTERM (resolves the ms the relay took to exit), unmount, e2fsck, mount, a new
   * relay process on it. Fallback: the switch off, the same relay goes on.
   */
  fix(): Promise<{ stopMs?: number; exitCode?: number | null }>;
}

const PROBES = 3;

describe('the spool volume turns read-only under a running relay', () => {
  let primary: SmtpPeer;
  let copy: SmtpPeer;
  let dir: string;
  let spool: string;
  let image: string;
  let mounted = false;
  let inProcess: InProcessRelay | undefined;
  const children: RelayChild[] = [];

  beforeAll(async () => {
    primary = await startSmtpPeer('primary');
    copy = await startSmtpPeer('copy');
    dir = await tempDir('rel-ro');
    spool = join(dir, 'spool');
    image = join(dir, 'spool.img');
    await mkdir(spool, { recursive: true });
    await writeManifests(join(dir, 'manifests'), {
      'd.yaml': dualDomain('ro.test', primary.port, copy.port),
    });
    // MAILROUTE_READ_ONLY_FALLBACK=1 forces the fallback (to test it where mount works).
    if (process.env['MAILROUTE_READ_ONLY_FALLBACK'] === '1') return;
    try {
      await run('truncate', ['-s', '64M', image]);
      await run('mkfs.ext4', ['-q', '-F', image]);
      await run('mount', ['-o', 'loop,errors=remount-ro', image, spool]);
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

  async function realVolume(): Promise<Target> {
    let child = await spawnRelay(relayArgs(dir));
    children.push(child);
    return {
      variant: 'ext4 on a loop device, errors=remount-ro, real process',
      smtpPort: () => child.smtpPort,
      httpPort: () => child.httpPort,
      adminPort: () => adminPort(child),
      logs: () => child.logs,
      spoolDir: spool,
      async readOnly() {
        const { stdout } = await run('findmnt', ['-n', '-o', 'SOURCE', spool]);
        const dev = stdout.trim().replace(/^\/dev\//, '');
        // what the kernel does on an I/O error under errors=remount-ro: the file system is read-only at once
        await run('sh', ['-c', `echo mailroute-test > /sys/fs/ext4/${dev}/trigger_fs_error`]);
        const { stdout: opts } = await run('findmnt', ['-n', '-o', 'OPTIONS', spool]);
        expect(opts).toMatch(/(^|,)ro(,|$)|emergency_ro/);
      },
      async fix() {
        const t0 = performance.now();
        child.kill('SIGTERM');
        const exitCode = await child.exited;
        const stopMs = Math.round(performance.now() - t0);
        // a container restart keeps the read-only mount: a relay started on it exits at once and says why (before:
        // the advice for a folder owned by another user, fsGroup)
        const refused = await run(NODE, [join(ROOT, 'bin/mailroute.js'), 'relay', ...relayArgs(dir)], {
          timeout: 20_000,
        }).then(
          () => ({ code: 0, stderr: '' }),
          (err: { code?: number; stderr?: string }) => ({ code: err.code, stderr: err.stderr ?? '' }),
        );
        expect(refused.code).toBe(1);
        expect(refused.stderr).toContain('its file system is read-only');
        expect(refused.stderr).not.toContain('fsGroup');
        await run('umount', [spool]);
        // e2fsck exits 1 when it corrected something (the error the kernel recorded): not a failure
        await run('e2fsck', ['-fy', image]).catch((err: { code?: number }) => {
          if (err.code !== 1) throw err;
        });
        await run('mount', ['-o', 'loop,errors=remount-ro', image, spool]);
        child = await spawnRelay(relayArgs(dir));
        children.push(child);
        return { stopMs, exitCode };
      },
    };
  }

  async function fallback(): Promise<Target> {
    const ro = { on: false };
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (l: string) => void lines.push(l) });
    inProcess = await startRelay({ 'd.yaml': dualDomain('ro.test', primary.port, copy.port) }, [], {
      spoolFs: switchableFs(ro),
      logger,
    });
    const r = inProcess;
    return {
      variant: 'FALLBACK: injected spool fs refusing writes with EROFS, in-process',
      smtpPort: () => r.relay.smtp.port,
      httpPort: () => r.relay.http.port,
      adminPort: () => r.relay.admin.port,
      logs: () => lines,
      spoolDir: r.spoolDir,
      readOnly() {
        ro.on = true;
        return Promise.resolve();
      },
      fix() {
        ro.on = false;
        return Promise.resolve({});
      },
    };
  }

  it('delivers no message twice while the spool cannot record it, pauses and answers 4xx; after the fix every message is delivered and the queue drains', async () => {
    await primary.down();
    await copy.down();
    const target = mounted ? await realVolume() : await fallback();
    const subjects = Array.from({ length: MESSAGES }, (_, i) => `ro-${i + 1}`);
    for (const s of subjects) expect(await sendOne(target.smtpPort(), s), s).toMatch(/^250 /);
    await waitFor(async () => (await queueTotal(target.adminPort())) === MESSAGES, {
      what: `${MESSAGES} messages queued`,
    });

    await target.readOnly();
    // the primary comes back, the secondary stays down (a migration's new system still being set up): each message's
    // state would record its primary leg delivered and its copy deferred
    await primary.up();
    // the first attempts go out and their results cannot be written: delivery pauses
    const delivered = (): number => subjectCounts(primary, TAG).size;
    await waitFor(() => delivered() >= 1, { timeoutMs: 30_000, what: 'a message delivered while read-only' });
    // The relay writes the kept results again 1, 2 and 4 s later (each write refused): seven retry steps of 1 s,
    // each of which repeated those deliveries before.
    const probes = (): number =>
      target.logs().filter((l) => l.includes('"delivery: the spool still takes no writes')).length;
    await waitFor(() => probes() >= PROBES, {
      timeoutMs: 30_000,
      what: `${PROBES} writes of the kept results refused`,
    });
    const probesSeen = probes();
    const whileReadOnly = subjectCounts(primary, TAG);
    for (const [s, n] of whileReadOnly) expect(n, `${s} at the primary while read-only`).toBe(1);
    expect(subjectCounts(copy, TAG).size).toBe(0);
    const text = await metrics(target.httpPort());
    expect(metricSum(text, 'mailroute_delivery_paused')).toBe(1);
    expect(metricSum(text, 'mailroute_results_unrecorded')).toBe(whileReadOnly.size);
    // new mail: 4xx, never 250
    const refused = await sendOne(target.smtpPort(), 'ro-refused');
    expect(refused).toMatch(/^4\d\d /);
    const readyz = await fetch(`http://127.0.0.1:${target.httpPort()}/readyz`);
    if (mounted) {
      expect(readyz.status).toBe(503);
      expect(await readyz.text()).toContain('EROFS');
    }

    await copy.up();
    const fixed = await target.fix();
    if (fixed.stopMs !== undefined) {
      expect(fixed.stopMs, 'SIGTERM to exit (ms)').toBeLessThan(30_000);
      expect(fixed.exitCode).toBe(0);
    }
    await waitFor(async () => (await queueTotal(target.adminPort())) === 0, {
      timeoutMs: 30_000,
      what: 'queue drained after the fix',
    });
    const after = { primary: subjectCounts(primary, TAG), copy: subjectCounts(copy, TAG) };
    // the real volume's fix restarts the relay: the deliveries it could not record are repeated once (at-least-once);
    // the fallback's relay goes on and writes what it kept
    for (const s of subjects) {
      const expected = mounted && whileReadOnly.has(s) ? 2 : 1;
      expect(after.primary.get(s), `${s} at the primary`).toBe(expected);
      expect(after.copy.get(s), `${s} at the copy`).toBe(1);
    }
    expect(after.primary.has('ro-refused')).toBe(false);
    expect(await quarantinedFiles(target.spoolDir)).toEqual([]);
    expect(await sendOne(target.smtpPort(), 'ro-after'), 'new mail after the fix').toMatch(/^250 /);
    await waitFor(() => subjectCounts(primary, /^ro-after$/).get('ro-after') === 1, {
      what: 'the message after the fix delivered',
    });
    report('read-only spool', {
      variant: target.variant,
      refused: refused.slice(0, 9),
      probes: probesSeen,
      deliveredWhileReadOnly: whileReadOnly.size,
      ...fixed,
    });
  });
});
