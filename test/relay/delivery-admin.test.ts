// The queue admin API and `mailroute queue` against a real spool, engine and SMTP peers.
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run, type QueueIo } from '../../cli/commands/queue.ts';
import { startAdminServer, type AdminServer } from '../../relay/admin/server.ts';
import type { QueueListView } from '../../relay/admin/view.ts';
import { startDelivery, type DeliveryEngine } from '../../relay/delivery/engine.ts';
import { openSpool } from '../../relay/spool/spool.ts';
import type { Leg, ServerRoute } from '../../routing/model.ts';
import type { Spool } from '../../relay/spool/types.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { deliveryOptions, envelope, localServer } from '../support/delivery.ts';
import { rawHttp } from '../support/net.ts';
import { waitFor } from '../support/wait.ts';

const logger = pino({ level: 'silent' });
const srv = (name: string, port: number): ServerRoute => localServer(name, port, 2);

let dir: string;
let primary: SmtpPeer;
let copy: SmtpPeer;
let spool: Spool;
let engine: DeliveryEngine;
let admin: AdminServer;
let adminArg: string;
const ids: string[] = [];

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: QueueIo = {
    stdout: (s) => (out += s),
    stderr: (s) => (err += s),
    env: {},
    fetch: (...a) => fetch(...a),
    now: () => new Date(),
  };
  const code = await run(argv, io);
  return { code, out, err };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailroute-admin-'));
  primary = await startSmtpPeer('legacy');
  copy = await startSmtpPeer('zoho');
  await copy.down();
  spool = await openSpool({ dir, logger });
  engine = startDelivery(
    deliveryOptions(spool, {
      logger,
      retryScheduleMs: [60_000],
      timeouts: { connectionMs: 2000, greetingMs: 2000, socketMs: 5000 },
    }),
  );
  admin = await startAdminServer({
    listen: { host: '127.0.0.1', port: 0 },
    spool,
    engine,
    logger,
    tokenFile: join(dir, 'admin.token'),
  });
  adminArg = `127.0.0.1:${admin.address.port}`;
  const legs = (r: string): Leg[] => [
    { server: srv('legacy', primary.port), recipient: r, role: 'primary', bounces: 'Notify' },
    { server: srv('zoho', copy.port), recipient: r, role: 'copy', bounces: 'Suppress' },
  ];
  for (const rcpts of [['bob@example.com'], ['carol@example.com', 'dave@example.com']]) {
    const res = await spool.accept(
      envelope(rcpts.map((r) => ({ recipient: r, legs: legs(r) }))),
      Readable.from(['Subject: admin\r\n\r\nhi\r\n']),
    );
    if (!res.ok) throw res.error;
    ids.push(res.id);
    engine.notify(res.id);
  }
  await waitFor(() => primary.messages.length === 2 && engine.stats().deferred === 2, {
    what: 'primary delivered, copies deferred',
  });
});

afterAll(async () => {
  await admin.close();
  await engine.stop();
  await primary.close();
  await copy.close();
  await rm(dir, { recursive: true, force: true });
});

describe('queue admin API and CLI', () => {
  it('GET /queue lists each message with per-leg state', async () => {
    const res = await fetch(`http://${adminArg}/queue`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as QueueListView;
    expect(body.total).toBe(2);
    expect(body.messages.map((m) => m.id)).toEqual(ids);
    expect(body.messages[1]?.recipients.map((r) => r.summary)).toEqual([
      'primary delivered, copy deferred',
      'primary delivered, copy deferred',
    ]);
    const copyLeg = body.messages[0]?.recipients[0]?.legs[1];
    expect(copyLeg).toMatchObject({ role: 'copy', state: 'deferred', attempts: 1, server: 'zoho' });
    expect(copyLeg?.lastReply).toMatch(/ECONNREFUSED/);
  });

  it('GET /queue is bounded by bytes too: past the cap it lists fewer messages (at least one) and says truncated', async () => {
    const one = JSON.stringify(
      ((await (await fetch(`http://${adminArg}/queue`)).json()) as QueueListView).messages[0],
    ).length;
    /** GET /queue from a second admin server on the same spool and engine, its page capped at maxPageBytes. */
    const pageOf = async (maxPageBytes: number, tokenFile: string): Promise<QueueListView> => {
      const capped = await startAdminServer({
        listen: { host: '127.0.0.1', port: 0 },
        spool,
        engine,
        logger,
        tokenFile: join(dir, tokenFile),
        maxPageBytes,
      });
      try {
        return (await (await fetch(`http://127.0.0.1:${capped.address.port}/queue`)).json()) as QueueListView;
      } finally {
        await capped.close();
      }
    };
    const body = await pageOf(one + 10, 'admin-small.token'); // room for one message's view, not two
    expect(body.total).toBe(2);
    expect(body.messages.map((m) => m.id)).toEqual([ids[0]]);
    expect(body.truncated).toBe(true);
    const t = await pageOf(1, 'admin-tiny.token'); // smaller than any view: still the first message
    expect(t.messages.map((m) => m.id)).toEqual([ids[0]]);
    expect(t.truncated).toBe(true);
  });

  it('`queue list` shows the legs at a glance', async () => {
    const r = await cli('list', '--admin', adminArg);
    expect(r.code).toBe(0);
    const lines = r.out.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+AGE\s+FROM\s+RECIPIENT\s+LEGS$/);
    expect(lines[1]).toMatch(
      new RegExp(
        `^${ids[0]}\\s+\\d+s\\s+alice@sender\\.example\\s+bob@example\\.com\\s+primary delivered, copy deferred$`,
      ),
    );
    expect(lines[3]).toMatch(/^\s+dave@example\.com\s+primary delivered, copy deferred$/);
    expect(lines.at(-1)).toBe('2 messages (0 pending, 2 deferred)');
  });

  it('`queue show ID` prints every leg with attempts, next attempt and last reply', async () => {
    const r = await cli('show', ids[0]!, '--admin', adminArg);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`id:       ${ids[0]}`);
    expect(r.out).toMatch(/ {2}primary delivered +legacy \(127\.0\.0\.1:\d+\) <bob@example\.com>/);
    expect(r.out).toMatch(/ {4}attempts 1; next in \d+s; last: .*ECONNREFUSED/);
    const j = await cli('show', ids[0]!, '--admin', adminArg, '-o', 'json');
    expect(JSON.parse(j.out)).toMatchObject({ id: ids[0], state: 'deferred' });
  });

  it('errors: unknown id, malformed id, wrong method, unreachable API, bad flags', async () => {
    const unknown = await cli('show', '0000000000000zzz', '--admin', adminArg);
    expect(unknown).toMatchObject({ code: 1 });
    expect(unknown.err).toContain('0000000000000zzz: not in the queue (HTTP 404)');
    const bad = await cli('delete', '../etc', '--admin', adminArg, '--spool', dir);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('is not a queue id (HTTP 400)');
    expect((await fetch(`http://${adminArg}/queue/flush`)).status).toBe(405);
    expect((await fetch(`http://${adminArg}/nope`)).status).toBe(404);
    const down = await cli('list', '--admin', '127.0.0.1:1');
    expect(down.code).toBe(1);
    expect(down.err).toMatch(/cannot reach the admin API at http:\/\/127\.0\.0\.1:1/);
    expect((await cli('list', '--admin', 'nonsense')).code).toBe(2);
    expect((await cli('explode')).code).toBe(2);
    expect((await cli('show')).err).toContain('missing queue ID');
  });

  it('`queue delete ID` drops a message; `queue flush` delivers the deferred copies now', async () => {
    // without the relay's token file a state change is not even sent
    const noToken = await cli('delete', ids[1]!, '--admin', adminArg, '--spool', join(dir, 'nowhere'));
    expect(noToken.code).toBe(1);
    expect(noToken.err).toMatch(
      /cannot read the admin token \(.*nowhere\/admin\.token: ENOENT\); pass the relay's --spool/,
    );
    const del = await cli('delete', ids[1]!, '--admin', adminArg, '--spool', dir);
    expect(del).toMatchObject({ code: 0, out: `deleted ${ids[1]}\n` });
    expect((await cli('delete', ids[1]!, '--admin', adminArg, '--spool', dir)).code).toBe(1);
    await copy.up();
    // The retry is a minute away: only a flush brings it forward.
    const fl = await cli('flush', '--admin', adminArg, '--token-file', join(dir, 'admin.token'));
    expect(fl.code).toBe(0);
    expect(fl.out).toBe('flush requested: 1 message queued\n');
    await waitFor(() => copy.messages.length === 1, { what: 'the flushed copy' });
    expect(copy.messages[0]?.rcptTo).toEqual(['bob@example.com']);
    await waitFor(async () => (await cli('list', '--admin', adminArg)).out === 'queue is empty\n', {
      what: 'empty queue',
    });
    // the engine forgets the message right after its files are gone
    await waitFor(async () => {
      const stats = (await (await fetch(`http://${adminArg}/queue/stats`)).json()) as { messages: number };
      return stats.messages === 0;
    });
  });

  it('refuses browsers and DNS rebinding, needs the token for state changes, caps the page', async () => {
    const { mode } = await stat(join(dir, 'admin.token'));
    expect(mode & 0o777).toBe(0o600);
    const token = (await readFile(join(dir, 'admin.token'), 'utf8')).trim();
    const port = admin.address.port;
    // a cross-origin "simple" POST, as a web page can send it
    const xorigin = await rawHttp(port, 'POST', '/queue/flush', {
      'content-type': 'text/plain',
      origin: 'http://attacker.example',
    });
    expect(xorigin.status).toBe(403);
    expect(xorigin.body).toMatch(/cross-origin request refused/);
    // the same with the token: a browser never gets to send it, but Origin alone is enough to refuse
    expect(
      (await rawHttp(port, 'POST', '/queue/flush', { origin: 'null', authorization: `Bearer ${token}` }))
        .status,
    ).toBe(403);
    expect((await rawHttp(port, 'GET', '/queue', { 'sec-fetch-site': 'cross-site' })).status).toBe(403);
    // DNS rebinding: the page's own name as Host
    const rebound = await rawHttp(port, 'GET', `/queue/${ids[0]}`, { host: `attacker.example:${port}` });
    expect(rebound.status).toBe(421);
    expect((JSON.parse(rebound.body) as { error: string }).error).toMatch(
      /^Host "attacker\.example:\d+" is not this admin API/,
    );
    expect((await rawHttp(port, 'DELETE', `/queue/${ids[0]}`, { host: 'attacker.example' })).status).toBe(
      421,
    );
    expect((await rawHttp(port, 'GET', '/queue?limit=0', { host: `localhost:${port}` })).status).toBe(200);
    expect((await rawHttp(port, 'GET', '/queue?limit=0', { host: `[::1]:${port}` })).status).toBe(200);
    // state changes need the token
    const noAuth = await rawHttp(port, 'DELETE', `/queue/${ids[0]}`, {});
    expect(noAuth.status).toBe(401);
    expect(noAuth.body).toMatch(/needs the admin token/);
    expect((await rawHttp(port, 'DELETE', `/queue/${ids[0]}`, { authorization: 'Bearer nope' })).status).toBe(
      403,
    );
    expect((await rawHttp(port, 'POST', '/queue/flush', {})).status).toBe(401);
    expect((await rawHttp(port, 'POST', '/queue/flush', { authorization: `Bearer ${token}` })).status).toBe(
      202,
    );
    // the page size is capped
    const big = await rawHttp(port, 'GET', '/queue?limit=100000', {});
    expect(big.status).toBe(400);
    expect((JSON.parse(big.body) as { error: string }).error).toBe(
      'limit: expected an integer 0..1000 (the largest page), got "100000"',
    );
    expect((await rawHttp(port, 'GET', '/queue?limit=1000', {})).status).toBe(200);
  });
});
