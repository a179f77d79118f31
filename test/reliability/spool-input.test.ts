// The spool's contents are input too (a corrupted disk, a bad restore, a local writer): a relay started on a queue
// folder holding FIFOs and a directory named like messages, a state with CRLF in an address and a leg with an unknown
// TLS mode keeps serving SMTP and HTTP, quarantines each of them once, sends nothing injected downstream, and stops on
// SIGTERM. FIFOs that appear while it runs are quarantined when the admin API reads them.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeMessageFile } from '../../relay/spool/format.ts';
import { defaultSpoolFs, type SpoolFs } from '../../relay/spool/spool.ts';
import { httpGet, startRelay } from '../relay/relay-harness.ts';
import type { SpoolState } from '../../relay/spool/types.ts';
import type { SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor, withDeadline } from '../support/wait.ts';
import {
  adminPort,
  dualDestinations,
  metrics,
  metricSum,
  queueTotal,
  relayArgs,
  type RelayChild,
  report,
  run,
  spawnRelay,
  submit,
} from './support.ts';

const idAt = (prefix: string, i: number): string => `${prefix}${String(i).padStart(16 - prefix.length, '0')}`;

describe('spool input: hostile or damaged queue files', () => {
  let primary: SmtpPeer;
  let copy: SmtpPeer;
  let dir: string;
  let relay: RelayChild | undefined;

  beforeAll(async () => {
    ({ primary, copy, dir } = await dualDestinations('rel-spool-input', 'spool.test'));
  });
  afterAll(async () => {
    if (relay && relay.proc.exitCode === null) relay.kill('SIGKILL');
    await primary?.close();
    await copy?.close();
  });

  it('FIFOs, a directory, CRLF in an address, an unknown TLS mode: served, quarantined, nothing injected', async () => {
    const queue = join(dir, 'spool', 'queue');
    await mkdir(queue, { recursive: true });
    const server = (tls: string) => ({
      name: 'old',
      host: '127.0.0.1',
      port: primary.port,
      mx: false,
      tls,
      maxConnections: 2,
    });
    const body = Buffer.from('Subject: hostile\r\n\r\nbody\r\n');
    const state = (id: string, recipient: string, tls = 'None'): SpoolState =>
      ({
        version: 1,
        id,
        meta: {
          mailFrom: 'a@origin.test',
          clientAddress: '127.0.0.1',
          clientHostname: 'localhost',
          helo: 'x',
          receivedAt: new Date().toISOString(),
          revision: 'r',
          smtputf8: false,
          body8bit: false,
        },
        size: body.length,
        legs: [
          {
            recipient: 'bob@spool.test',
            leg: { server: server(tls), recipient, role: 'primary', bounces: 'Notify' },
            state: 'pending',
            attempts: 0,
          },
        ],
      }) as SpoolState;
    const crlf = idAt('c', 1);
    const tls = idAt('t', 1);
    await writeFile(
      join(queue, `${crlf}.msg`),
      encodeMessageFile(body, state(crlf, 'bob@spool.test>\r\nRCPT TO:<evil@elsewhere.test')),
    );
    await writeFile(
      join(queue, `${tls}.msg`),
      encodeMessageFile(body, state(tls, 'bob@spool.test', 'Sometimes')),
    );
    await mkdir(join(queue, `${idAt('d', 1)}.msg`));
    const atStart = Array.from({ length: 20 }, (_, i) => join(queue, `${idAt('f', i)}.msg`));
    await run('mkfifo', atStart);

    relay = await spawnRelay(relayArgs(dir));
    const r = relay;
    // the 20 FIFOs and the directory at start, the two bad states when the engine loads them
    await waitFor(
      async () => metricSum(await metrics(r.httpPort), 'mailroute_spool_quarantined_total') >= 23,
      {
        timeoutMs: 20_000,
        what: '23 entries quarantined',
      },
    );

    // FIFOs that appear while the relay runs: the admin API's listing reads each message
    const later = Array.from({ length: 20 }, (_, i) => join(queue, `${idAt('g', i)}.msg`));
    await run('mkfifo', later);
    const listing = await withDeadline(
      10_000,
      fetch(`http://127.0.0.1:${adminPort(r)}/queue?limit=100`),
      'GET /queue',
    );
    expect(listing.status).toBe(200);
    expect(await queueTotal(adminPort(r))).toBe(0);

    const health = await withDeadline(5000, fetch(`http://127.0.0.1:${r.httpPort}/healthz`), '/healthz');
    expect(health.status).toBe(200);
    const ready = await withDeadline(5000, fetch(`http://127.0.0.1:${r.httpPort}/readyz`), '/readyz');
    expect(ready.status).toBe(200);
    const reply = await withDeadline(
      10_000,
      submit(r.smtpPort, { from: 'a@origin.test', to: 'carol@spool.test', subject: 'after', text: 'x' }),
      'DATA',
    );
    expect(reply).toMatch(/^250 /);
    await waitFor(() => primary.messages.length >= 1 && copy.messages.length >= 1, {
      timeoutMs: 20_000,
      what: 'the good message on both legs',
    });
    const text = await metrics(r.httpPort);
    const quarantined = metricSum(text, 'mailroute_spool_quarantined_total');
    expect(quarantined).toBeGreaterThanOrEqual(43);
    expect(metricSum(text, 'mailroute_spool_quarantined')).toBe(quarantined);
    const everyRcpt = [...primary.messages, ...copy.messages].flatMap((m) => m.rcptTo);
    expect(everyRcpt.filter((a) => a.includes('evil'))).toEqual([]);

    r.kill('SIGTERM');
    expect(await withDeadline(20_000, r.exited, 'exit after SIGTERM')).toBe(0);
    report('spool-input', { fifos: 40, directories: 1, badStates: 2, quarantined, injectedRcpts: 0 });
  });

  it('/healthz answers 503 while a spool file-system call hangs (the liveness probe restarts the pod)', async () => {
    let hang = false;
    const held: (() => void)[] = [];
    const spoolFs: SpoolFs = {
      ...defaultSpoolFs,
      readdir: (p) =>
        hang
          ? new Promise<void>((resolve) => held.push(resolve)).then(() => defaultSpoolFs.readdir(p))
          : defaultSpoolFs.readdir(p),
    };
    const r = await startRelay({}, ['--spool-stall-timeout', '1s'], { spoolFs });
    try {
      expect((await httpGet(r.relay.http.port, '/healthz')).status).toBe(200);
      hang = true;
      // the admin listing reads the queue folder: that call now never returns
      void fetch(`http://127.0.0.1:${r.relay.admin.port}/queue`).catch(() => undefined);
      const stuck = await waitFor(
        async () => {
          const h = await httpGet(r.relay.http.port, '/healthz');
          return h.status === 503 ? h : undefined;
        },
        { timeoutMs: 10_000, what: '/healthz to answer 503' },
      );
      expect(stuck.body).toMatch(/readdir\) has been waiting/);
      hang = false;
      for (const release of held.splice(0)) release();
      await waitFor(async () => (await httpGet(r.relay.http.port, '/healthz')).status === 200, {
        timeoutMs: 10_000,
        what: '/healthz to recover',
      });
    } finally {
      hang = false;
      for (const release of held.splice(0)) release();
      await r.close();
    }
  });
});
