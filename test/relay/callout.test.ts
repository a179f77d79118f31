// Recipient-verification callouts end to end: a real relay (runRelay) asking real smtp-server peers. The callout
// speaks each server's language (STARTTLS + AUTH, certificate verification, implicit TLS), asks about the address
// that will be delivered (copyRecipientDomain), caches answers, and bounds what many clients can make it do to a
// server (connections per server, reuse, a bounded wait queue, unknown-recipient limits).
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCalloutPool } from '../../relay/inbound/callout.ts';
import { createDnsResolver } from '../../relay/dns.ts';
import type { ServerRoute } from '../../routing/model.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { makeSelfSigned } from '../support/tls.ts';
import { waitFor } from '../support/wait.ts';
import { code, RawSmtp } from './raw-client.ts';
import { domainManifests, dualDomain, startRelay, type InProcessRelay } from './relay-harness.ts';

const cert = makeSelfSigned();
const SECRET = `---
apiVersion: v1
kind: Secret
metadata: {name: legacy-smtp, labels: {mailroute.io/smtp-auth: "true"}}
stringData: {username: relay-user, password: s3cret}
`;

/** A Split (or Dual) domain whose servers are given whole (so TLS mode and authSecretRef can be set). */
function domain(name: string, old: string, neu: string, policy: string, extraDomain = ''): string {
  return domainManifests({
    domain: name,
    servers: [`name: old, host: 127.0.0.1, ${old}`, `name: new, host: 127.0.0.1, ${neu}`],
    extraDomain,
    policy: `  primary: old\n  secondary: new\n${policy}`,
  });
}

async function send(port: number, to: string, subject: string): Promise<string> {
  const t = nodemailer.createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
  try {
    const info = await t.sendMail({ from: 'sender@origin.test', to, subject, text: `body of ${subject}` });
    return info.response;
  } catch (err) {
    return String((err as { response?: string }).response ?? err);
  } finally {
    t.close();
  }
}

const subjects = (peer: SmtpPeer, rcpt: string): string[] =>
  peer.for(rcpt).map((m) => /^Subject: (.*)$/m.exec(m.raw.toString())?.[1] ?? '?');

describe('callouts speak the server language and ask about the delivered address', () => {
  const known = new Set(['alice@secure.test', 'alice@implicit.test', 'alice@verify.test']);
  let secure: SmtpPeer; // STARTTLS + AUTH required
  let implicit: SmtpPeer; // implicit TLS
  let aliases: SmtpPeer; // knows only the copy addresses
  let plain: SmtpPeer; // the other side of every domain
  let r: InProcessRelay;
  let port: number;

  beforeAll(async () => {
    const rcpt = (a: string) => (known.has(a) ? undefined : { code: 550, message: '5.1.1 no such user' });
    secure = await startSmtpPeer('secure', { rcpt }, undefined, {
      tls: cert,
      auth: { user: 'relay-user', pass: 's3cret' },
    });
    implicit = await startSmtpPeer('implicit', { rcpt }, undefined, { tls: cert, implicitTls: true });
    aliases = await startSmtpPeer('aliases', {
      rcpt: (a) => (a === 'bob@acc-copy.test' ? undefined : { code: 550, message: '5.1.1 no such user' }),
    });
    plain = await startSmtpPeer('plain');
    const split = `  mode: Split\n`;
    const verifyOld = `  recipientVerification: {server: old, cacheTTL: 1h}\n`;
    r = await startRelay({
      'secure.yaml': `${domain(
        'secure.test',
        `port: ${secure.port}, tls: Required, authSecretRef: {name: legacy-smtp}`,
        `port: ${plain.port}, tls: None`,
        split,
        verifyOld,
      )}${SECRET}`,
      'verify.yaml': domain(
        'verify.test',
        `port: ${secure.port}, tls: RequiredVerify, authSecretRef: {name: legacy-smtp}`,
        `port: ${plain.port}, tls: None`,
        split,
        verifyOld,
      ),
      'implicit.yaml': domain(
        'implicit.test',
        `port: ${implicit.port}, tls: Implicit`,
        `port: ${plain.port}, tls: None`,
        split,
        verifyOld,
      ),
      'acc.yaml': domain(
        'acc.test',
        `port: ${plain.port}, tls: None`,
        `port: ${aliases.port}, tls: None`,
        `  mode: Dual\n  dual:\n    scope: Accounts\n    copyRecipientDomain: acc-copy.test\n`,
        `  recipientVerification: {server: new, cacheTTL: 1h}\n`,
      ),
    });
    port = r.relay.smtp.port;
  });

  afterAll(async () => {
    await r?.close();
    await Promise.all([secure, implicit, aliases, plain].map((p) => p?.close()));
  });

  it('STARTTLS + AUTH (tls: Required, authSecretRef): the callout succeeds over TLS as the user, and is cached', async () => {
    expect(await send(port, 'alice@secure.test', 'secure-1')).toMatch(/^250 /);
    expect(await send(port, 'nobody@secure.test', 'secure-2')).toMatch(/^250 /);
    await waitFor(() => subjects(secure, 'alice@secure.test').includes('secure-1'), { what: 'alice on old' });
    await waitFor(() => subjects(plain, 'nobody@secure.test').includes('secure-2'), {
      what: 'nobody on new',
    });
    // asked once each, over TLS, authenticated (the delivery of alice's message adds one more RCPT for her)
    const asked = secure.rcpts.filter((x) => x.code !== 250 || x.address === 'alice@secure.test');
    expect(asked.every((x) => x.secure && x.user === 'relay-user')).toBe(true);
    // (the catch-all probe after alice's `exists`, mailrouteprobe...@secure.test, may come at any time: not counted)
    const callouts = () => secure.rcpts.filter((x) => !x.address.startsWith('mailrouteprobe')).length;
    const before = callouts();
    // both answers are cached: positive (cacheTTL) and negative
    expect(await send(port, 'alice@secure.test', 'secure-3')).toMatch(/^250 /);
    expect(await send(port, 'nobody@secure.test', 'secure-4')).toMatch(/^250 /);
    await waitFor(() => subjects(secure, 'alice@secure.test').includes('secure-3'), { what: 'alice again' });
    await waitFor(() => subjects(plain, 'nobody@secure.test').includes('secure-4'), { what: 'nobody again' });
    // only the delivery of secure-3 reached the server, no callout
    expect(callouts() - before).toBe(1);
    expect(secure.rcpts.filter((x) => x.address === 'nobody@secure.test')).toHaveLength(1);
    const hits = await r.relay.metrics.calloutCacheHits.get();
    const hit = (result: string) =>
      hits.values.find((v) => v.labels.server === 'old' && v.labels.result === result)?.value ?? 0;
    expect(hit('exists')).toBeGreaterThanOrEqual(1);
    expect(hit('absent')).toBeGreaterThanOrEqual(1);
  });

  it('RequiredVerify: a certificate that does not verify is never trusted, so the recipient is tempfailed', async () => {
    const c = await RawSmtp.connect(port);
    try {
      await c.begin('sender@origin.test', []);
      const reply = await c.cmd('RCPT TO:<alice@verify.test>');
      expect(reply).toMatch(/^451 4\.4\.3 /);
    } finally {
      c.close();
    }
    expect(secure.rcpts.filter((x) => x.address === 'alice@verify.test')).toEqual([]);
    const callouts = await r.relay.metrics.callouts.get();
    expect(
      callouts.values.some((v) => v.labels.server === 'old' && v.labels.result === 'failed' && v.value > 0),
    ).toBe(true);
  });

  it('tls: Implicit: the callout talks TLS from the first byte', async () => {
    expect(await send(port, 'alice@implicit.test', 'implicit-1')).toMatch(/^250 /);
    expect(await send(port, 'nobody@implicit.test', 'implicit-2')).toMatch(/^250 /);
    await waitFor(() => subjects(implicit, 'alice@implicit.test').includes('implicit-1'), {
      what: 'alice over implicit TLS',
    });
    await waitFor(() => subjects(plain, 'nobody@implicit.test').includes('implicit-2'), { what: 'nobody' });
    expect(implicit.rcpts.filter((x) => x.address === 'nobody@implicit.test')).toEqual([
      { address: 'nobody@implicit.test', code: 550, secure: true },
    ]);
  });

  it('scope Accounts + copyRecipientDomain: the secondary is asked about the copy address, and gets the copy', async () => {
    expect(await send(port, 'bob@acc.test', 'acc-1')).toMatch(/^250 /);
    expect(await send(port, 'carol@acc.test', 'acc-2')).toMatch(/^250 /);
    await waitFor(() => subjects(aliases, 'bob@acc-copy.test').includes('acc-1'), { what: "bob's copy" });
    await waitFor(() => subjects(plain, 'carol@acc.test').includes('acc-2'), { what: "carol's primary" });
    await waitFor(() => subjects(plain, 'bob@acc.test').includes('acc-1'), { what: "bob's primary" });
    // asked about the copy addresses only, never the originals
    const asked = aliases.rcpts.map((x) => x.address);
    expect(asked).toContain('carol@acc-copy.test');
    expect(asked.filter((a) => a.endsWith('@acc.test'))).toEqual([]);
    expect(aliases.for('carol@acc-copy.test')).toEqual([]);
  });
});

describe('callout amplification is bounded', () => {
  const CAP = 2;
  let old: SmtpPeer;
  let neu: SmtpPeer;
  let r: InProcessRelay;

  beforeAll(async () => {
    // the old server knows nobody the test makes up
    old = await startSmtpPeer('old', {
      rcpt: (a) => (a.startsWith('user') ? undefined : { code: 550, message: '5.1.1 no such user' }),
    });
    neu = await startSmtpPeer('new');
    r = await startRelay(
      {
        'split.yaml': dualDomain('split.test', old.port, neu.port, {
          mode: 'Split',
          extraDomain: '  recipientVerification: {server: old, cacheTTL: 1h}\n',
        }),
        'reject.yaml': dualDomain('reject.test', old.port, neu.port, {
          mode: 'Split',
          extraPolicy: '  split:\n    unknownRecipients: Reject\n',
          extraDomain: '  recipientVerification: {server: old, cacheTTL: 1h}\n',
        }),
      },
      [
        '--callout-connections',
        String(CAP),
        '--max-recipients',
        '1000',
        '--max-unknown-recipients',
        '20',
        '--max-unknown-recipients-per-ip',
        '0',
      ],
    );
  });

  afterAll(async () => {
    await r?.close();
    await old?.close();
    await neu?.close();
  });

  /** One session that pipelines `n` RCPTs at once and reads every reply. */
  async function pipelined(rcpts: string[]): Promise<string[]> {
    const c = await RawSmtp.connect(r.relay.smtp.port);
    try {
      await c.reply();
      await c.cmd('EHLO client.test');
      await c.cmd('MAIL FROM:<sender@origin.test>');
      c.write(rcpts.map((a) => `RCPT TO:<${a}>\r\n`).join(''));
      const out: string[] = [];
      for (let i = 0; i < rcpts.length; i++) {
        const reply = await c.reply(30_000);
        if (reply === '') break;
        out.push(reply);
      }
      return out;
    } finally {
      c.close();
    }
  }

  it('many sessions of pipelined random RCPTs: at most the cap of connections at once, each reused', async () => {
    const SESSIONS = 8;
    const PER = 60;
    const before = old.stats.connections;
    const replies = await Promise.all(
      Array.from({ length: SESSIONS }, (_, s) =>
        pipelined(
          Array.from(
            { length: PER },
            (_, i) => `x${s}-${i}-${Math.random().toString(36).slice(2)}@split.test`,
          ),
        ),
      ),
    );
    const all = replies.flat();
    expect(all).toHaveLength(SESSIONS * PER);
    // Split, unknown on the primary -> the secondary: every one accepted after a callout
    expect(all.every((x) => code(x) === 250)).toBe(true);
    expect(old.stats.maxOpen).toBeLessThanOrEqual(CAP);
    const opened = old.stats.connections - before;
    expect(opened).toBeGreaterThan(0);
    // 480 callouts over a handful of reused connections (100 probes each at most)
    expect(opened).toBeLessThanOrEqual(Math.ceil((SESSIONS * PER) / 100) + CAP);
    expect(old.rcpts.length).toBeGreaterThanOrEqual(SESSIONS * PER);
    const conns = await r.relay.metrics.calloutConnections.get();
    expect(conns.values.find((v) => v.labels.server === 'old')?.value).toBe(opened);
  });

  it('a full wait queue tempfails at once with 451 4.4.3 instead of queueing without bound', async () => {
    const r2 = await startRelay(
      {
        'split.yaml': dualDomain('split.test', old.port, neu.port, {
          mode: 'Split',
          extraDomain: '  recipientVerification: {server: old, cacheTTL: 1h}\n',
        }),
      },
      ['--callout-connections', '1', '--callout-queue', '2', '--max-unknown-recipients', '0'],
    );
    old.behaviour.rcptDelayMs = 200;
    const before = old.stats.maxOpen;
    // connections of the other relay may still be open (idle): count from here
    const base = old.stats.open;
    old.stats.maxOpen = base;
    try {
      const started = Date.now();
      const one = async (s: number): Promise<string> => {
        const c = await RawSmtp.connect(r2.relay.smtp.port);
        try {
          await c.reply();
          await c.cmd('EHLO client.test');
          await c.cmd('MAIL FROM:<sender@origin.test>');
          return await c.cmd(`RCPT TO:<q${s}-${Math.random().toString(36).slice(2)}@split.test>`);
        } finally {
          c.close();
        }
      };
      const replies = await Promise.all(Array.from({ length: 8 }, (_, s) => one(s)));
      const busy = replies.filter((x) => x.startsWith('451 4.4.3'));
      // one connection in use, two waiting: the other five get 451 without waiting for the server
      expect(busy.length).toBeGreaterThanOrEqual(4);
      expect(replies.filter((x) => code(x) === 250).length).toBeGreaterThanOrEqual(1);
      expect(old.stats.maxOpen).toBeLessThanOrEqual(base + 1);
      expect(Date.now() - started).toBeLessThan(5_000);
      const callouts = await r2.relay.metrics.callouts.get();
      expect(callouts.values.find((v) => v.labels.result === 'busy')?.value).toBe(busy.length);
    } finally {
      old.behaviour.rcptDelayMs = 0;
      old.stats.maxOpen = Math.max(before, old.stats.maxOpen);
      await r2.close();
    }
  });

  it('subaddresses of one mailbox (user7+1, user7+2, ...): one callout, not one per address', async () => {
    const before = old.rcpts.filter((x) => x.address.startsWith('user7')).length;
    const rcpts = Array.from(
      { length: 50 },
      (_, i) => `user7+${i}-${Math.random().toString(36).slice(2)}@split.test`,
    );
    const replies = await pipelined(rcpts);
    expect(replies).toHaveLength(50);
    // known on the primary: every one accepted for it
    expect(replies.every((x) => code(x) === 250)).toBe(true);
    const asked = old.rcpts.filter((x) => x.address.startsWith('user7')).slice(before);
    // the one callout asks about the mailbox, whose answer stands for every subaddress (a subaddress's own answer
    // is never recorded for its mailbox: relay/inbound/verify.ts askSubaddress)
    expect(asked.map((x) => x.address)).toEqual(['user7@split.test']);
  });

  it('after --max-unknown-recipients refusals the session gets 421 4.7.0 and is closed, and it is counted', async () => {
    const rcpts = Array.from({ length: 30 }, (_, i) => `nobody${i}@reject.test`);
    const replies = await pipelined(rcpts);
    expect(replies.slice(0, 20).every((x) => x.startsWith('550 5.1.1'))).toBe(true);
    expect(replies[20]).toMatch(/^421 4\.7\.0 /);
    expect(replies).toHaveLength(21);
    const rejected = await r.relay.metrics.messagesRejected.get();
    expect(rejected.values.find((v) => v.labels.reason === 'TooManyUnknownRecipients')?.value).toBe(1);
  });
});

describe('unknown recipients per client address', () => {
  it('--max-unknown-recipients-per-ip closes new sessions of an address that keeps naming unknown recipients', async () => {
    const old = await startSmtpPeer('old', {
      rcpt: () => ({ code: 550, message: '5.1.1 no such user' }),
    });
    const neu = await startSmtpPeer('new');
    const r = await startRelay(
      {
        'reject.yaml': dualDomain('reject.test', old.port, neu.port, {
          mode: 'Split',
          extraPolicy: '  split:\n    unknownRecipients: Reject\n',
          extraDomain: '  recipientVerification: {server: old, cacheTTL: 1h}\n',
        }),
      },
      ['--max-unknown-recipients', '0', '--max-unknown-recipients-per-ip', '5'],
    );
    try {
      const session = async (n: number): Promise<string[]> => {
        const c = await RawSmtp.connect(r.relay.smtp.port);
        try {
          await c.reply();
          await c.cmd('EHLO client.test');
          await c.cmd('MAIL FROM:<sender@origin.test>');
          const out: string[] = [];
          for (let i = 0; i < n; i++) {
            const reply = await c.cmd(`RCPT TO:<u${Math.random().toString(36).slice(2)}@reject.test>`);
            out.push(reply);
            if (reply === '' || reply.startsWith('421')) break;
          }
          return out;
        } finally {
          c.close();
        }
      };
      const first = await session(3);
      expect(first.every((x) => x.startsWith('550 5.1.1'))).toBe(true);
      const second = await session(5);
      expect(second.slice(0, 2).every((x) => x.startsWith('550 5.1.1'))).toBe(true);
      expect(second[2]).toMatch(/^421 4\.7\.0 /);
      // a new session from the same address is refused at its first RCPT
      expect(await session(1)).toEqual([expect.stringMatching(/^421 4\.7\.0 /)]);
    } finally {
      await r.close();
      await old.close();
      await neu.close();
    }
  });
});

describe('callout pool: credentials and failing servers', () => {
  it('a rotated password is not used on connections set up with the old one; a failed setup suspends the server', async () => {
    const peer = await startSmtpPeer('auth', {}, undefined, {
      tls: cert,
      auth: { user: 'relay-user', pass: 's3cret' },
    });
    let pass = 's3cret';
    let now = 0;
    const pool = createCalloutPool({
      hostname: 'relay.test',
      timeouts: { connectionMs: 3000, greetingMs: 3000, socketMs: 3000 },
      credentials: () => Promise.resolve({ user: 'relay-user', pass }),
      resolver: createDnsResolver(),
      maxConnections: 2,
      maxQueued: 10,
      idleMs: 60_000,
      maxProbesPerConnection: 100,
      suspendMs: 10_000,
      now: () => now,
    });
    const server: ServerRoute = {
      name: 'old',
      host: '127.0.0.1',
      port: peer.port,
      mx: false,
      tls: 'Required',
      authSecretRef: { namespace: 'mail', name: 'legacy-smtp' },
      maxConnections: 10,
    };
    try {
      expect(await pool.probe(server, 'a@x.test')).toMatchObject({ kind: 'reply', code: 250 });
      expect(await pool.probe(server, 'b@x.test')).toMatchObject({ kind: 'reply', code: 250 });
      expect(peer.stats.connections).toBe(1); // reused
      pass = 'rotated-and-wrong';
      const failed = await pool.probe(server, 'c@x.test');
      expect(failed).toMatchObject({ kind: 'failed' });
      expect(failed.kind === 'failed' && failed.text).toMatch(/AUTH/);
      expect(peer.rcpts.map((x) => x.address)).toEqual(['a@x.test', 'b@x.test']);
      // the server is not asked again until the suspension is over
      const connections = peer.stats.connections;
      expect(await pool.probe(server, 'd@x.test')).toMatchObject({ kind: 'suspended' });
      expect(peer.stats.connections).toBe(connections);
      now = 10_000;
      pass = 's3cret';
      expect(await pool.probe(server, 'e@x.test')).toMatchObject({ kind: 'reply', code: 250 });
    } finally {
      pool.close();
      await peer.close();
    }
  });

  it('AUTH only over TLS: tls None or Opportunistic to a server without STARTTLS sends no AUTH', async () => {
    const peer = await startSmtpPeer('plain-auth', {}, undefined, {
      auth: { user: 'relay-user', pass: 's3cret' },
    });
    const pool = createCalloutPool({
      hostname: 'relay.test',
      timeouts: { connectionMs: 3000, greetingMs: 3000, socketMs: 3000 },
      credentials: () => Promise.resolve({ user: 'relay-user', pass: 's3cret' }),
      resolver: createDnsResolver(),
      maxConnections: 2,
      maxQueued: 10,
      idleMs: 60_000,
      maxProbesPerConnection: 100,
      suspendMs: 0,
    });
    const server = (tls: ServerRoute['tls'], allowPlaintextAuth = false): ServerRoute => ({
      name: 'old',
      host: '127.0.0.1',
      port: peer.port,
      mx: false,
      tls,
      ...(allowPlaintextAuth ? { allowPlaintextAuth: true as const } : {}),
      authSecretRef: { namespace: 'mail', name: 'legacy-smtp' },
      maxConnections: 10,
    });
    try {
      const none = await pool.probe(server('None'), 'a@x.test');
      expect(none).toMatchObject({ kind: 'failed' });
      expect(none.kind === 'failed' && none.text).toMatch(/AUTH without TLS refused/);
      const opp = await pool.probe(server('Opportunistic'), 'b@x.test');
      expect(opp).toMatchObject({ kind: 'failed' });
      expect(opp.kind === 'failed' && opp.text).toMatch(/ETLS/);
      expect(peer.auths).toEqual([]);
      expect(peer.rcpts).toEqual([]);
      // the server's own statement allows it
      expect(await pool.probe(server('Opportunistic', true), 'c@x.test')).toMatchObject({
        kind: 'reply',
        code: 250,
      });
      expect(peer.auths.map((a) => a.secure)).toEqual([false]);
    } finally {
      pool.close();
      await peer.close();
    }
  });
});

describe('SMTPUTF8 recipients (RFC 6531): a callout about a non-ASCII address', () => {
  // Postfix's way: SMTPUTF8 offered, and a non-ASCII address without it on MAIL FROM gets 553 5.6.7
  let postfix: SmtpPeer;
  // a server without SMTPUTF8 that refuses a non-ASCII address's syntax
  let legacy: SmtpPeer;
  // the other server of every domain: takes everything
  let other: SmtpPeer;
  let r: InProcessRelay;
  let port: number;

  beforeAll(async () => {
    const mailboxes = new Set(['josé@utf8.test', 'zoë@copy8.test', 'alice@legacy8.test']);
    const rcpt = (a: string) => (mailboxes.has(a) ? undefined : { code: 550, message: '5.1.1 no such user' });
    postfix = await startSmtpPeer('postfix', { rcpt }, undefined, { requireSmtpUtf8: true });
    legacy = await startSmtpPeer(
      'legacy',
      {
        rcpt: (a) => (/[^\x20-\x7e]/.test(a) ? { code: 553, message: '5.1.3 bad address syntax' } : rcpt(a)),
      },
      undefined,
      { hideSmtpUtf8: true },
    );
    other = await startSmtpPeer('other');
    r = await startRelay({
      'utf8.yaml': dualDomain('utf8.test', postfix.port, other.port, {
        mode: 'Split',
        extraDomain: '  recipientVerification: {server: old, cacheTTL: 1h}\n',
      }),
      'legacy8.yaml': dualDomain('legacy8.test', legacy.port, other.port, {
        mode: 'Split',
        extraDomain: '  recipientVerification: {server: old, cacheTTL: 1h}\n',
      }),
      'copy8.yaml': dualDomain('copy8.test', other.port, postfix.port, {
        mode: 'Dual',
        scope: 'Accounts',
        extraDomain: '  recipientVerification: {server: new, cacheTTL: 1h}\n',
      }),
    });
    port = r.relay.smtp.port;
  });

  afterAll(async () => {
    await r?.close();
    await Promise.all([postfix, legacy, other].map((p) => p?.close()));
  });

  /** One SMTPUTF8 transaction to `to`; the RCPT reply, and DATA's when the RCPT was taken. */
  async function sendUtf8(to: string, subject: string): Promise<{ rcpt: string; data?: string }> {
    const c = await RawSmtp.connect(port);
    const utf8 = (line: string): Promise<string> => {
      c.write(Buffer.from(`${line}\r\n`, 'utf8'));
      return c.reply();
    };
    try {
      await c.reply();
      expect(code(await c.cmd('EHLO client.test'))).toBe(250);
      expect(await utf8('MAIL FROM:<sender@origin.test> SMTPUTF8')).toMatch(/^250 /);
      const rcpt = await utf8(`RCPT TO:<${to}>`);
      if (code(rcpt) !== 250) return { rcpt };
      expect(code(await c.cmd('DATA'))).toBe(354);
      c.write(Buffer.from(`Subject: ${subject}\r\n\r\nhello\r\n.\r\n`, 'utf8'));
      return { rcpt, data: await c.reply() };
    } finally {
      c.close();
    }
  }

  it('Split, the mailbox is on the primary: the callout declares SMTPUTF8, and the mail lands on the primary only', async () => {
    const to = 'josé@utf8.test';
    const sent = await sendUtf8(to, 'utf8-split');
    expect(sent.rcpt).toMatch(/^250 /);
    expect(sent.data).toMatch(/^250 /);
    await waitFor(() => postfix.for(to).length + other.for(to).length > 0, { what: `${to} delivered` });
    expect(other.for(to)).toEqual([]);
    expect(subjects(postfix, to)).toEqual(['utf8-split']);
    // every RCPT for it (the callout's and the delivery's) went in an SMTPUTF8 transaction and was taken
    expect(postfix.rcpts.filter((x) => x.address === to)).toEqual([
      { address: to, code: 250, secure: false, smtputf8: true },
      { address: to, code: 250, secure: false, smtputf8: true },
    ]);
    // a non-ASCII address the primary does not have is still absent there: it goes to the secondary
    const nobody = 'nadie-ñ@utf8.test';
    expect((await sendUtf8(nobody, 'utf8-absent')).data).toMatch(/^250 /);
    await waitFor(() => subjects(other, nobody).includes('utf8-absent'), {
      what: `${nobody} on the secondary`,
    });
    expect(postfix.rcpts.filter((x) => x.address === nobody)).toEqual([
      { address: nobody, code: 550, secure: false, smtputf8: true },
    ]);
  });

  it('Dual scope Accounts: a secondary that has the non-ASCII mailbox gets its copy', async () => {
    const to = 'zoë@copy8.test';
    expect((await sendUtf8(to, 'utf8-copy')).data).toMatch(/^250 /);
    await waitFor(() => subjects(other, to).includes('utf8-copy'), { what: `${to} on the primary` });
    await waitFor(() => subjects(postfix, to).includes('utf8-copy'), { what: `the copy of ${to}` });
    expect(postfix.rcpts.filter((x) => x.address === to).every((x) => x.smtputf8 === true)).toBe(true);
  });

  it('Split, a primary that does not offer SMTPUTF8: not asked, the answer is unknown (451 4.4.3), never the secondary', async () => {
    const to = 'josé@legacy8.test';
    const first = await sendUtf8(to, 'utf8-legacy');
    expect(first.rcpt).toMatch(/^451 4\.4\.3 /);
    // the sender retries: the same answer, not a guess
    expect((await sendUtf8(to, 'utf8-legacy-2')).rcpt).toMatch(/^451 4\.4\.3 /);
    // RFC 6531 §3.2: the non-ASCII address is never sent to a server that did not offer SMTPUTF8
    expect(legacy.rcpts.filter((x) => /[^\x20-\x7e]/.test(x.address))).toEqual([]);
    expect(other.for(to)).toEqual([]);
    // an ASCII recipient of the same server is verified as before
    expect(await send(port, 'alice@legacy8.test', 'legacy-ascii')).toMatch(/^250 /);
    await waitFor(() => subjects(legacy, 'alice@legacy8.test').includes('legacy-ascii'), {
      what: 'alice on the legacy primary',
    });
  });
});
