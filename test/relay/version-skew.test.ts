// Version skew (docs/operations.md, "Upgrades, rollbacks and version skew"): during a Helm upgrade an operator of one
// version writes tables that relays of another read, and a rollback starts an older relay on a spool a newer one
// wrote. What a later version may add is read here without being understood:
// - a spool state with fields this version does not know is delivered and the fields are kept when it is rewritten;
// - an accept-log record of a kind this version does not know is skipped, not taken for the end of its segment: the
//   small messages accepted after it are delivered;
// - a routing table of a newer format is refused: the relay keeps routing by the last table it read and says why.
// Real relays over real spool folders and routing files; the destinations are real SMTP servers on 127.0.0.1.
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encodeRecord, KIND_ACCEPT, RECORD_HEADER } from '../../relay/spool/accept-log.ts';
import { encodeMessageFile } from '../../relay/spool/format.ts';
import { newQueueIdGenerator } from '../../relay/spool/spool.ts';
import type { SpoolState } from '../../relay/spool/types.ts';
import type { RelayHandle } from '../../relay/relay.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { pino } from 'pino';
import { parseRelayConfig } from '../../relay/config.ts';
import { runRelay } from '../../relay/relay.ts';
import {
  dualDomain,
  httpGet,
  LOOPBACK_LISTENERS,
  runRelayIn,
  submit,
  tempDir,
  writeManifests,
} from './relay-harness.ts';

const DOMAIN = 'skew.test';

describe('version skew', () => {
  let peer: SmtpPeer;
  let other: SmtpPeer;
  let relay: RelayHandle | undefined;
  const nextId = newQueueIdGenerator(() => new Date());

  beforeAll(async () => {
    peer = await startSmtpPeer('primary');
    other = await startSmtpPeer('other');
  });
  afterEach(async () => {
    await relay?.shutdown('test');
    relay = undefined;
    peer.behaviour = {};
  });
  afterAll(async () => {
    await peer?.close();
    await other?.close();
  });

  /** A folder with a Direct policy to `port` (the manifests folder) and an empty spool. */
  const folder = async (prefix: string, port: number): Promise<string> => {
    const dir = await tempDir(prefix);
    await writeManifests(join(dir, 'manifests'), {
      'd.yaml': dualDomain(DOMAIN, port, port, { mode: 'Direct' }),
    });
    await mkdir(join(dir, 'spool', 'queue'), { recursive: true });
    return dir;
  };

  /** A pending initial state as a later version might write it: with fields this version does not know. */
  const laterState = (id: string, body: Buffer): SpoolState & Record<string, unknown> =>
    ({
      version: 1,
      id,
      futureTop: { kept: true },
      meta: {
        mailFrom: 'a@origin.test',
        clientAddress: '127.0.0.1',
        clientHostname: 'localhost',
        helo: 'client.test',
        receivedAt: new Date().toISOString(),
        revision: 'r',
        smtputf8: false,
        body8bit: false,
        futureMeta: 'kept',
      },
      size: body.length,
      bodyCrc32: crc32(body),
      legs: [
        {
          recipient: `bob@${DOMAIN}`,
          leg: {
            server: {
              name: 'old',
              host: '127.0.0.1',
              port: peer.port,
              mx: false,
              tls: 'None',
              maxConnections: 2,
              futureServer: 1,
            },
            domain: DOMAIN,
            recipient: `bob@${DOMAIN}`,
            role: 'primary',
            bounces: 'Notify',
            futureLeg: 'kept',
          },
          state: 'pending',
          attempts: 0,
          futureLegState: [1, 2],
        },
      ],
    }) as unknown as SpoolState & Record<string, unknown>;

  const bodyOf = (subject: string, bytes: number): Buffer => {
    const lines = [`Subject: ${subject}`, ''];
    for (let i = 0; lines.join('\r\n').length < bytes; i++)
      lines.push(`line ${i} of ${subject} ${'x'.repeat(60)}`);
    return Buffer.from(lines.join('\r\n') + '\r\n');
  };
  const delivered = (subject: string): Buffer[] =>
    peer.messages.filter((m) => m.raw.includes(`Subject: ${subject}\r\n`)).map((m) => m.raw);

  it('delivers a spool state with fields it does not know, keeps them when it rewrites it, quarantines nothing', async () => {
    const dir = await folder('skew-state', peer.port);
    const queue = join(dir, 'spool', 'queue');
    const body = bodyOf('later-state', 200 * 1024); // a large message: its own file
    const id = nextId();
    await writeFile(join(queue, `${id}.msg`), encodeMessageFile(body, laterState(id, body)));
    // the first attempt is deferred: the state is rewritten into <id>.json
    peer.behaviour = { rcpt: () => ({ code: 451, message: '4.3.0 try again' }) };
    relay = await runRelayIn(dir);
    const json = join(queue, `${id}.json`);
    const rewritten = await waitFor(
      async () => JSON.parse(await readFile(json, 'utf8')) as Record<string, unknown> & SpoolState,
      { timeoutMs: 15_000, what: 'the state rewritten after a deferral' },
    );
    expect(rewritten.legs[0]?.state).toBe('deferred');
    expect(rewritten['futureTop']).toEqual({ kept: true });
    expect((rewritten.meta as unknown as Record<string, unknown>)['futureMeta']).toBe('kept');
    const leg = rewritten.legs[0] as unknown as Record<string, unknown> & { leg: Record<string, unknown> };
    expect(leg['futureLegState']).toEqual([1, 2]);
    expect(leg.leg['futureLeg']).toBe('kept');
    peer.behaviour = {};
    await waitFor(() => delivered('later-state').length >= 1, { timeoutMs: 15_000, what: 'the delivery' });
    const raw = delivered('later-state');
    expect(raw).toHaveLength(1);
    expect(raw[0]?.subarray(raw[0].length - body.length).equals(body)).toBe(true);
    await waitFor(async () => (await readdir(queue)).length === 0, { what: 'the message removed' });
    expect(await readdir(join(dir, 'spool', 'quarantine')).catch(() => [])).toEqual([]);
  });

  it('replays the accept records after a record of a kind it does not know, and keeps that segment', async () => {
    const dir = await folder('skew-log', peer.port);
    const logDir = join(dir, 'spool', 'log');
    await mkdir(logDir, { recursive: true });
    const seq = 1;
    const record = (subject: string): { id: string; buf: Buffer; body: Buffer } => {
      const id = nextId();
      const body = bodyOf(subject, 2000);
      return {
        id,
        body,
        buf: Buffer.concat(
          encodeRecord(seq, KIND_ACCEPT, id, [encodeMessageFile(body, laterState(id, body))]),
        ),
      };
    };
    const before = record('log-before');
    const after = record('log-after');
    // a later version's record: a kind this version does not know, whole, its CRC right
    const foreign = Buffer.concat(
      encodeRecord(seq, KIND_ACCEPT, nextId(), [Buffer.from('a later kind of record')]),
    );
    foreign.writeUInt8(9, 12);
    let crc = crc32(foreign.subarray(4, 20));
    crc = crc32(foreign.subarray(RECORD_HEADER), crc);
    foreign.writeUInt32BE(crc, 20);
    const segment = Buffer.alloc(64 * 1024);
    Buffer.concat([before.buf, foreign, after.buf]).copy(segment);
    await writeFile(join(logDir, `${seq.toString(16).padStart(16, '0')}.seg`), segment);

    relay = await runRelayIn(dir);
    await waitFor(() => delivered('log-before').length >= 1 && delivered('log-after').length >= 1, {
      timeoutMs: 15_000,
      what: 'both messages of the log delivered',
    });
    for (const m of [before, after]) {
      const raw = delivered(m.id === before.id ? 'log-before' : 'log-after');
      expect(raw).toHaveLength(1);
      expect(raw[0]?.subarray(raw[0].length - m.body.length).equals(m.body)).toBe(true);
    }
    // the segment is not reused: kept in quarantine/ for a roll forward or a human
    const kept = await readdir(join(dir, 'spool', 'quarantine'));
    expect(kept.filter((n) => n.startsWith('0000000000000001.seg.'))).toHaveLength(1);
    expect(kept).toHaveLength(1);
  });

  it('refuses a routing table of a newer format: keeps routing by the last one, says why on /readyz', async () => {
    const dir = await tempDir('skew-table');
    const file = join(dir, 'routing.json');
    const table = (port: number, format?: number): string =>
      JSON.stringify({
        apiVersion: 'mailroute.io/v1alpha1',
        kind: 'RoutingTable',
        ...(format !== undefined ? { format } : {}),
        domains: {
          [DOMAIN]: {
            domain: DOMAIN,
            mailDomain: { kind: 'MailDomain', namespace: 'mail', name: 'skew', generation: 1 },
            policy: { kind: 'DeliveryPolicy', namespace: 'mail', name: 'skew', generation: 1 },
            servers: {
              old: { name: 'old', host: '127.0.0.1', port, mx: false, tls: 'None', maxConnections: 2 },
            },
            mode: 'Direct',
            primary: 'old',
            accounts: {},
            rejectUnknownRecipients: false,
            testRecipients: {},
          },
        },
        sources: [],
      });
    await writeFile(file, table(peer.port));
    // the relay reads the table from --routing-file (the ConfigMap's key as the kubelet mounts it)
    const parsed = parseRelayConfig(
      ['--routing-file', file, '--spool', join(dir, 'spool'), ...LOOPBACK_LISTENERS, '--greeting-delay', '0'],
      { MAILROUTE_DNS_SERVERS: process.env.MAILROUTE_DNS_SERVERS },
    );
    if (parsed.ok !== true) throw new Error('bad test config');
    relay = await runRelay(parsed.config, { logger: pino({ level: 'silent' }), sourcePollMs: 100 });
    const r = relay;
    const first = r.revision();
    expect(first).toBeDefined();
    // a newer operator's table: format 2, and the domain's server moved to `other`
    const tmp = `${file}.tmp`;
    await writeFile(tmp, table(other.port, 2));
    await rename(tmp, file);
    const ready = await waitFor(
      async () => {
        const got = await httpGet(r.http.port, '/readyz');
        return got.body.includes('format: 2') ? got : undefined;
      },
      { timeoutMs: 10_000, what: '/readyz naming the refused format' },
    );
    expect(ready.status).toBe(200); // it still routes, by the table it understood
    expect(ready.body).toContain('routes by tables of format 1 at most');
    expect(r.revision()).toBe(first);
    expect(
      await submit(r.smtp.port, {
        from: 'a@origin.test',
        to: `bob@${DOMAIN}`,
        subject: 'skew-refused',
        text: 'x',
      }),
    ).toMatch(/^250 /);
    await waitFor(() => delivered('skew-refused').length === 1, {
      timeoutMs: 10_000,
      what: 'delivered by the old table',
    });
    expect(other.messages).toHaveLength(0);
    // the same table at format 1 is taken
    await writeFile(tmp, table(other.port));
    await rename(tmp, file);
    await waitFor(() => r.revision() !== first, { timeoutMs: 10_000, what: 'the format-1 table taken' });
    expect(
      await submit(r.smtp.port, {
        from: 'a@origin.test',
        to: `bob@${DOMAIN}`,
        subject: 'skew-taken',
        text: 'x',
      }),
    ).toMatch(/^250 /);
    await waitFor(() => other.messages.length === 1, {
      timeoutMs: 10_000,
      what: 'delivered by the new table',
    });
  });
});
