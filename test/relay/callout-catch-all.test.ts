// Catch-all detection, end to end: a real relay (runRelay) asking real smtp-server and scripted peers on 127.0.0.1.
// A server that accepts any local part answers every callout "exists", so Split sends every recipient to it (mail for
// users who exist only on the secondary ends in its catch-all). After a callout answered `exists`, the relay asks the
// server about an address that cannot exist (mailrouteprobe + 16 random base32 characters), at most once per
// (server, domain) per min(cacheTTL, --callout-negative-ttl), in the background:
//   - accepted: one warning naming the server, the domain and the fix, and mailroute_callout_catch_all 1; routing is
//     unchanged (the mail still goes where it went);
//   - refused: the gauge 0, no warning, one probe however many RCPTs;
//   - a probe that fails (the server drops it, or never answers) changes no client's reply, and suspends nothing;
//   - the pool serves client callouts before the probe (relay/inbound/callout.ts ProbeOptions.background).
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pino, type Logger } from 'pino';
import { createCalloutPool } from '../../relay/inbound/callout.ts';
import { createDnsResolver } from '../../relay/dns.ts';
import type { ServerRoute } from '../../routing/model.ts';
import { freePort } from '../support/net.ts';
import { scriptedServers } from '../support/scripted-smtp.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { code, RawSmtp } from './raw-client.ts';
import {
  dualDomain,
  httpGet,
  metricValue,
  startRelay,
  submit,
  type InProcessRelay,
} from './relay-harness.ts';

const PROBE = /^mailrouteprobe[a-z2-7]{16}@/;
const CATCH_ALL = 'recipient verification: the server accepts any recipient (a catch-all)';
const NO_ANSWER = 'recipient verification: no answer about an address that cannot exist (catch-all unknown)';

/** A Split domain whose primary (old) is asked about each recipient. */
const splitDomain = (domain: string, old: number, neu: number): string =>
  dualDomain(domain, old, neu, {
    mode: 'Split',
    extraDomain: '  recipientVerification: {server: old, cacheTTL: 1h}\n',
  });

/** A logger that keeps the relay's warnings and debug lines (as parsed JSON). */
function recordingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'debug' },
    {
      write(line: string) {
        const o = JSON.parse(line) as Record<string, unknown>;
        if (typeof o.msg === 'string' && o.msg.startsWith('recipient verification')) lines.push(o);
      },
    },
  );
  return { logger, lines };
}

const startsWith = (lines: Record<string, unknown>[], prefix: string) =>
  lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith(prefix));

/** mailroute_callout_catch_all{server,domain} as /metrics serves it; undefined when there is no such series. */
async function catchAllGauge(r: InProcessRelay, server: string, domain: string): Promise<number | undefined> {
  const { body } = await httpGet(r.relay.http.port, '/metrics');
  return metricValue(body, 'mailroute_callout_catch_all', `{server="${server}",domain="${domain}"}`);
}

/** One message through the relay (its reply to the end of DATA). */
const send = (port: number, to: string, subject: string): Promise<string> =>
  submit(port, { from: 'sender@origin.test', to, subject, text: subject });

/** One session that pipelines the RCPTs at once and reads every reply (no DATA: nothing is delivered). */
async function pipelined(port: number, rcpts: string[]): Promise<string[]> {
  const c = await RawSmtp.connect(port);
  try {
    await c.reply();
    await c.cmd('EHLO client.test');
    await c.cmd('MAIL FROM:<sender@origin.test>');
    c.write(rcpts.map((a) => `RCPT TO:<${a}>\r\n`).join(''));
    const out: string[] = [];
    for (let i = 0; i < rcpts.length; i++) out.push(await c.reply(15_000));
    return out;
  } finally {
    c.close();
  }
}

/** The relay's reply to one RCPT TO in a fresh session, and how long it took. */
async function rcpt(port: number, to: string): Promise<{ reply: string; ms: number }> {
  const c = await RawSmtp.connect(port);
  try {
    await c.reply();
    expect(code(await c.cmd('EHLO client.test'))).toBe(250);
    expect(code(await c.cmd('MAIL FROM:<sender@origin.test>'))).toBe(250);
    const started = performance.now();
    const reply = await c.cmd(`RCPT TO:<${to}>`);
    return { reply, ms: performance.now() - started };
  } finally {
    c.close();
  }
}

const subjects = (peer: SmtpPeer, to: string): string[] =>
  peer.for(to).map((m) => /^Subject: (.*)$/m.exec(m.raw.toString())?.[1] ?? '?');

const probesSeen = (peer: SmtpPeer): string[] =>
  peer.rcpts.map((x) => x.address).filter((a) => PROBE.test(a));

describe('a catch-all verification server: a warning and the gauge 1, routing as before', () => {
  let old: SmtpPeer; // Split primary: accepts any recipient
  let neu: SmtpPeer;
  let copies: SmtpPeer; // Dual scope Accounts secondary: accepts any recipient
  let r: InProcessRelay;
  let lines: Record<string, unknown>[];

  beforeAll(async () => {
    old = await startSmtpPeer('old');
    neu = await startSmtpPeer('new');
    copies = await startSmtpPeer('copies');
    const rec = recordingLogger();
    lines = rec.lines;
    r = await startRelay(
      {
        'split.yaml': splitDomain('split.test', old.port, neu.port),
        'acc.yaml': dualDomain('acc.test', neu.port, copies.port, {
          scope: 'Accounts',
          extraPolicy: '    copyRecipientDomain: acc-copy.test\n',
          extraDomain: '  recipientVerification: {server: new, cacheTTL: 1h}\n',
        }),
      },
      [],
      { logger: rec.logger },
    );
  });

  afterAll(async () => {
    await r?.close();
    await Promise.all([old, neu, copies].map((p) => p?.close()));
  });

  it('Split: alice (on the old server) and bob (only on the new one) both go to the old server, which is named in one warning', async () => {
    const port = r.relay.smtp.port;
    expect(await send(port, 'alice@split.test', 'alice-1')).toMatch(/^250 /);
    expect(await send(port, 'bob@split.test', 'bob-1')).toMatch(/^250 /);
    await waitFor(async () => (await catchAllGauge(r, 'old', 'split.test')) === 1, {
      what: 'mailroute_callout_catch_all{server="old",domain="split.test"} 1',
    });
    const warnings = startsWith(lines, CATCH_ALL).filter((l) => l.domain === 'split.test');
    expect(warnings).toHaveLength(1);
    const probes = probesSeen(old);
    expect(probes).toHaveLength(1);
    expect(probes[0]).toMatch(/@split\.test$/);
    expect(warnings[0]).toMatchObject({
      level: 40,
      server: 'old',
      host: '127.0.0.1',
      port: old.port,
      domain: 'split.test',
      probe: probes[0],
      periodSeconds: 600,
    });
    expect(warnings[0]?.msg).toContain('In Split every recipient goes to it');
    expect(warnings[0]?.msg).toContain('spec.accounts ({server: old, addresses: [...]})');
    expect(warnings[0]?.msg).toContain('take it out of spec.recipientVerification');
    // routing is as before: both on the old server (the catch-all takes bob's mail), nothing on the new one
    await waitFor(() => subjects(old, 'alice@split.test').includes('alice-1'), { what: 'alice on old' });
    await waitFor(() => subjects(old, 'bob@split.test').includes('bob-1'), { what: 'bob on old' });
    expect(neu.for('bob@split.test')).toEqual([]);
    // the probe was a RCPT only: never a message
    expect(old.messages.filter((m) => m.rcptTo.some((a) => PROBE.test(a)))).toEqual([]);
  });

  it('Split: more recipients within the period make no second probe and no second warning', async () => {
    const replies = await Promise.all(
      [0, 1, 2].map((s) =>
        pipelined(
          r.relay.smtp.port,
          Array.from({ length: 10 }, (_, i) => `user${s}-${i}@split.test`),
        ),
      ),
    );
    expect(replies.flat().every((x) => code(x) === 250)).toBe(true);
    const asked = old.rcpts.filter((x) => x.address.startsWith('user')).length;
    expect(asked).toBe(30);
    expect(probesSeen(old)).toHaveLength(1);
    expect(startsWith(lines, CATCH_ALL).filter((l) => l.domain === 'split.test')).toHaveLength(1);
    expect(await catchAllGauge(r, 'old', 'split.test')).toBe(1);
  });

  it('Dual scope Accounts: the secondary is probed at the copy domain, and every recipient still gets its copy', async () => {
    expect(await send(r.relay.smtp.port, 'carol@acc.test', 'carol-1')).toMatch(/^250 /);
    await waitFor(async () => (await catchAllGauge(r, 'new', 'acc-copy.test')) === 1, {
      what: 'mailroute_callout_catch_all{server="new",domain="acc-copy.test"} 1',
    });
    const probes = probesSeen(copies);
    expect(probes).toHaveLength(1);
    expect(probes[0]).toMatch(/@acc-copy\.test$/);
    expect(startsWith(lines, CATCH_ALL).filter((l) => l.domain === 'acc-copy.test')).toMatchObject([
      { server: 'new', port: copies.port, probe: probes[0] },
    ]);
    await waitFor(() => subjects(copies, 'carol@acc-copy.test').includes('carol-1'), {
      what: "carol's copy",
    });
    await waitFor(() => subjects(neu, 'carol@acc.test').includes('carol-1'), { what: "carol's primary" });
  });
});

describe('a server that refuses unknown recipients', () => {
  let old: SmtpPeer;
  let neu: SmtpPeer;
  let r: InProcessRelay;
  let lines: Record<string, unknown>[];
  const known = (a: string) => /^(alice|carol|dave|erin)(\d*)@split\.test$/.test(a);

  beforeAll(async () => {
    old = await startSmtpPeer('old', {
      rcpt: (a) => (known(a) ? undefined : { code: 550, message: '5.1.1 <x>: Recipient address rejected' }),
    });
    neu = await startSmtpPeer('new');
    const rec = recordingLogger();
    lines = rec.lines;
    r = await startRelay({ 'split.yaml': splitDomain('split.test', old.port, neu.port) }, [], {
      logger: rec.logger,
    });
  });

  afterAll(async () => {
    await r?.close();
    await old?.close();
    await neu?.close();
  });

  it('the gauge 0, no warning, and one probe for 81 RCPTs, 80 of them in 8 sessions at once', async () => {
    const batch = (tag: string) =>
      Promise.all(
        [0, 1, 2, 3].map((s) =>
          pipelined(
            r.relay.smtp.port,
            Array.from({ length: 10 }, (_, i) =>
              i % 2 === 0
                ? `${['alice', 'carol', 'dave', 'erin'][s]}${tag}${i}@split.test`
                : `${tag}x${s}-${i}@split.test`,
            ),
          ),
        ),
      );
    expect((await batch('1')).flat().every((x) => code(x) === 250)).toBe(true);
    // (a probe gives way to client callouts waiting for a connection, `busy`, and is made after a later `exists`:
    // one RCPT with no other callout under way makes sure of one)
    expect((await rcpt(r.relay.smtp.port, 'alice@split.test')).reply).toMatch(/^250 /);
    await waitFor(async () => (await catchAllGauge(r, 'old', 'split.test')) === 0, {
      what: 'mailroute_callout_catch_all{server="old",domain="split.test"} 0',
    });
    expect((await batch('2')).flat().every((x) => code(x) === 250)).toBe(true);
    // every RCPT the server saw: one callout per address (81), and the one probe
    expect(old.rcpts.filter((x) => !PROBE.test(x.address))).toHaveLength(81);
    expect(probesSeen(old)).toHaveLength(1);
    expect(old.rcpts.find((x) => PROBE.test(x.address))?.code).toBe(550);
    expect(startsWith(lines, CATCH_ALL)).toEqual([]);
    expect(
      startsWith(lines, 'recipient verification: the server refuses an address that cannot exist'),
    ).toMatchObject([{ level: 20, server: 'old', domain: 'split.test', probe: probesSeen(old)[0] }]);
    expect(await catchAllGauge(r, 'old', 'split.test')).toBe(0);
  });
});

describe('a probe that fails changes no client reply', () => {
  const cleanups: (() => unknown)[] = [];
  const { scripted, takeErrors } = scriptedServers(cleanups);
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
    expect(takeErrors()).toEqual([]);
  });

  /**
   * A primary that has alice and refuses everyone else; at a probe's RCPT `atProbe` runs (drop the connection, or
   * never answer). While `down`, a connection is closed as soon as it is accepted.
   */
  const primary = (atProbe: (s: { destroy(): void; closed: Promise<void> }) => Promise<void>) => {
    const state = { down: false };
    const server = scripted(async (s) => {
      if (state.down) return s.destroy();
      await s.hello(['PIPELINING']);
      for (;;) {
        const line = await s.line();
        if (line === undefined) return;
        if (line.startsWith('MAIL FROM:')) await s.reply('250 2.1.0 ok');
        else if (/^RCPT TO:<mailrouteprobe/.test(line)) return atProbe(s);
        else if (line.startsWith('RCPT TO:<alice@')) await s.reply('250 2.1.5 ok');
        else if (line.startsWith('RCPT TO:')) await s.reply('550 5.1.1 no such user');
        else if (line === 'RSET') await s.reply('250 2.0.0 ok');
        else if (line === 'QUIT') {
          await s.reply('221 2.0.0 bye');
          return s.end();
        } else await s.reply('502 5.5.2 not here');
      }
    });
    return { state, server };
  };

  it('the server drops the probe and refuses connections for a moment: the next client still gets its answer, not 451 (no suspension)', async () => {
    const { state, server } = primary((s) => {
      state.down = true;
      s.destroy();
      return Promise.resolve();
    });
    const old = await server;
    const neu = await startSmtpPeer('new');
    cleanups.push(() => neu.close());
    const rec = recordingLogger();
    const r = await startRelay({ 'split.yaml': splitDomain('split.test', old.port, neu.port) }, [], {
      logger: rec.logger,
    });
    cleanups.push(() => r.close());
    expect((await rcpt(r.relay.smtp.port, 'alice@split.test')).reply).toMatch(/^250 /);
    // the probe was dropped, tried again on a new connection (refused), and given up
    await waitFor(() => startsWith(rec.lines, NO_ANSWER).length === 1, { what: 'the failed probe logged' });
    expect(
      old.sessions.flatMap((s) => s.lines).filter((l) => /^RCPT TO:<mailrouteprobe/.test(l)),
    ).toHaveLength(1);
    expect(old.connections).toBe(2);
    state.down = false;
    // a failed probe does not suspend the server: bob is asked (absent: for the secondary), not tempfailed
    expect((await rcpt(r.relay.smtp.port, 'bob@split.test')).reply).toMatch(/^250 /);
    expect(old.sessions.flatMap((s) => s.lines)).toContain('RCPT TO:<bob@split.test>');
    expect(startsWith(rec.lines, 'recipient verification got no answer')).toEqual([]);
    expect(await catchAllGauge(r, 'old', 'split.test')).toBeUndefined();
  });

  it('the server never answers the probe: clients are answered at once meanwhile, and the probe ends at its deadline', async () => {
    const { server } = primary(async (s) => s.closed);
    const old = await server;
    const neu = await startSmtpPeer('new');
    cleanups.push(() => neu.close());
    const rec = recordingLogger();
    const TIMEOUT_MS = 1000;
    const r = await startRelay(
      { 'split.yaml': splitDomain('split.test', old.port, neu.port) },
      ['--callout-timeout', `${TIMEOUT_MS}ms`],
      { logger: rec.logger },
    );
    cleanups.push(() => r.close());
    const first = await rcpt(r.relay.smtp.port, 'alice@split.test');
    expect(first.reply).toMatch(/^250 /);
    await waitFor(() => old.sessions.some((s) => s.lines.some((l) => /^RCPT TO:<mailrouteprobe/.test(l))), {
      what: 'the probe sent',
    });
    // while the probe waits for its answer, another client's callout is made on another connection, at once
    const second = await rcpt(r.relay.smtp.port, 'bob@split.test');
    expect(second.reply).toMatch(/^250 /);
    expect(second.ms).toBeLessThan(TIMEOUT_MS);
    expect(startsWith(rec.lines, NO_ANSWER)).toEqual([]);
    await waitFor(() => startsWith(rec.lines, NO_ANSWER).length === 1, {
      what: 'the probe given up at its deadline',
      timeoutMs: 4 * TIMEOUT_MS,
    });
    expect((await rcpt(r.relay.smtp.port, 'carol@split.test')).reply).toMatch(/^250 /);
  });
});

describe('the callout pool: a background probe gives way to client callouts', () => {
  const server = (port: number, maxConnections = 1): ServerRoute => ({
    name: 'old',
    host: '127.0.0.1',
    port,
    mx: false,
    tls: 'None',
    maxConnections,
  });
  const poolFor = () =>
    createCalloutPool({
      hostname: 'relay.test',
      timeouts: { connectionMs: 2000, greetingMs: 2000, socketMs: 2000 },
      credentials: () => Promise.resolve(undefined),
      resolver: createDnsResolver(),
      maxConnections: 1,
      maxQueued: 10,
      idleMs: 60_000,
      maxProbesPerConnection: 100,
      suspendMs: 10_000,
    });

  it('a connection freed goes to the client callout waiting, not to the background probe that waited longer', async () => {
    const peer = await startSmtpPeer('old');
    const pool = poolFor();
    try {
      const s = server(peer.port);
      const [a, probe, b] = await Promise.all([
        pool.probe(s, 'a@x.test'),
        pool.probe(s, 'mailrouteprobeaaaa@x.test', undefined, { background: true }),
        pool.probe(s, 'b@x.test'),
      ]);
      for (const p of [a, probe, b]) expect(p).toMatchObject({ kind: 'reply', code: 250 });
      expect(peer.rcpts.map((x) => x.address)).toEqual(['a@x.test', 'b@x.test', 'mailrouteprobeaaaa@x.test']);
      expect(peer.stats.maxOpen).toBe(1);
    } finally {
      pool.close();
      await peer.close();
    }
  });

  it('a background probe is busy at once while a client callout waits, and never reaches the server', async () => {
    const peer = await startSmtpPeer('old');
    const pool = poolFor();
    try {
      const s = server(peer.port);
      const a = pool.probe(s, 'a@x.test');
      const b = pool.probe(s, 'b@x.test');
      const probe = await pool.probe(s, 'mailrouteprobebbbb@x.test', undefined, { background: true });
      expect(probe).toMatchObject({ kind: 'busy' });
      expect(await a).toMatchObject({ kind: 'reply', code: 250 });
      expect(await b).toMatchObject({ kind: 'reply', code: 250 });
      expect(peer.rcpts.map((x) => x.address)).toEqual(['a@x.test', 'b@x.test']);
    } finally {
      pool.close();
      await peer.close();
    }
  });

  it('a background probe that cannot connect suspends nothing (a client callout that cannot still does)', async () => {
    const port = await freePort();
    const pool = poolFor();
    const s = server(port, 2);
    // nothing listens yet
    const probe = await pool.probe(s, 'mailrouteprobecccc@x.test', undefined, { background: true });
    expect(probe).toMatchObject({ kind: 'failed' });
    const peer = await startSmtpPeer('old', {}, port);
    try {
      expect(await pool.probe(s, 'a@x.test')).toMatchObject({ kind: 'reply', code: 250 });
      expect(peer.rcpts.map((x) => x.address)).toEqual(['a@x.test']);
      // the same failure of a client callout suspends the server, as before
      await peer.down();
      expect(await pool.probe(s, 'b@x.test')).toMatchObject({ kind: 'failed' });
      await peer.up();
      expect(await pool.probe(s, 'c@x.test')).toMatchObject({ kind: 'suspended' });
    } finally {
      pool.close();
      await peer.close();
    }
  });
});
