import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { cacheSpelling } from '../../routing/address.ts';
import type { MailboxFact, ServerRoute } from '../../routing/model.ts';
import { createRelayMetrics } from '../telemetry/metrics.ts';
import type { CalloutPool, CalloutProbe } from './callout.ts';
import {
  cacheTtlFor,
  catchAllProbeAddress,
  createVerifier,
  enhancedStatusOf,
  factOfReply,
  noAnswerWarning,
  refusesForSmtpUtf8,
} from './verify.ts';

const ttl = { cacheTtlMs: 3_600_000, negativeTtlMs: 600_000, unknownTtlMs: 30_000 };

describe('cacheTtlFor', () => {
  it.each<[string, CalloutProbe, MailboxFact, number]>([
    ['exists: cacheTTL', { kind: 'reply', code: 250, text: '250 ok' }, 'exists', 3_600_000],
    ['absent: the negative TTL', { kind: 'reply', code: 550, text: '550 no' }, 'absent', 600_000],
    ['a 4xx reply: the unknown TTL', { kind: 'reply', code: 450, text: '450 later' }, 'unknown', 30_000],
    ['no reply (connection): not cached', { kind: 'failed', text: 'ECONNREFUSED' }, 'unknown', 0],
    ['busy: not cached', { kind: 'busy', text: 'busy' }, 'unknown', 0],
    ['suspended: not cached', { kind: 'suspended', text: 'down' }, 'unknown', 0],
    [
      'not asked for want of SMTPUTF8: the unknown TTL',
      { kind: 'unsupported', text: 'no SMTPUTF8' },
      'unknown',
      30_000,
    ],
  ])('%s', (_name, probe, fact, want) => {
    expect(cacheTtlFor(probe, fact, ttl)).toBe(want);
  });

  it('never caches longer than cacheTTL', () => {
    const short = { ...ttl, cacheTtlMs: 1000 };
    expect(cacheTtlFor({ kind: 'reply', code: 550, text: '' }, 'absent', short)).toBe(1000);
    expect(cacheTtlFor({ kind: 'reply', code: 451, text: '' }, 'unknown', short)).toBe(1000);
  });

  it.each([
    [250, 'exists'],
    [251, 'exists'],
    [550, 'absent'],
    [553, 'absent'],
    [450, 'unknown'],
    [530, 'unknown'],
  ] as const)('RCPT %d -> %s', (c, fact) => {
    expect(factOfReply(c)).toBe(fact);
  });
});

describe('factOfReply: a refusal for want of SMTPUTF8 is never absent', () => {
  it.each<[string, number, string, MailboxFact]>([
    ["Postfix's 553 5.6.7", 553, '553 5.6.7 Must declare SMTPUTF8 to send unicode address', 'unknown'],
    ['550 5.6.7', 550, '550 5.6.7 Non-ASCII addresses not permitted for that recipient', 'unknown'],
    ['553 5.6.9 (UTF-8 header)', 553, '553 5.6.9 UTF-8 header message cannot be transferred', 'unknown'],
    ['any X.6 class, 5.6.10', 550, '550 5.6.10 UTF-8 string reply is required', 'unknown'],
    [
      'without an enhanced code, SMTPUTF8 named',
      553,
      '553 Must declare SMTPUTF8 to send unicode address',
      'unknown',
    ],
    ['SMTPUTF8 named in lower case', 550, '550 smtputf8 required', 'unknown'],
    [
      '550 5.1.1 stays absent',
      550,
      '550 5.1.1 <josé@x.test>: Recipient address rejected: User unknown',
      'absent',
    ],
    ['553 5.1.3 (syntax) stays absent', 553, '553 5.1.3 bad address syntax', 'absent'],
    ['550 without text stays absent', 550, '', 'absent'],
    ['5.6.7 in the text, not as the status', 550, '550 5.1.1 no such user (see 5.6.7)', 'absent'],
    ['a 4xx about SMTPUTF8 is unknown as any 4xx', 450, '450 4.6.7 try SMTPUTF8 later', 'unknown'],
    ['250 exists whatever it says', 250, '250 2.1.5 SMTPUTF8 ok', 'exists'],
  ])('%s', (_name, c, text, fact) => {
    expect(factOfReply(c, text)).toBe(fact);
  });

  it.each([
    ['553 5.6.7 Must declare SMTPUTF8', true],
    ['553-5.6.7 first line of many', true],
    ['550 5.16.7 subject 16, not 6', false],
    ['550 5.1.1 no such user', false],
    ['550 4.6.7.1 odd', false],
    ['', false],
  ] as const)('refusesForSmtpUtf8(%j) -> %s', (text, want) => {
    expect(refusesForSmtpUtf8(text)).toBe(want);
  });
});

/** The verification server of the createVerifier and catch-all suites (their pools are fakes: nothing connects). */
const server: ServerRoute = {
  name: 'old',
  host: '127.0.0.1',
  port: 25,
  mx: false,
  tls: 'None',
  maxConnections: 1,
};

describe('createVerifier (cache in front of a pool)', () => {
  const recording = (replies: Record<string, number>) => {
    const asked: string[] = [];
    const pool: CalloutPool = {
      probe: (_s, a) => {
        asked.push(a);
        const c = replies[a];
        return Promise.resolve(
          c === undefined ? { kind: 'failed', text: 'down' } : { kind: 'reply', code: c, text: `${c} x` },
        );
      },
      stats: () => ({ connections: 0, waiting: 0 }),
      close: () => undefined,
    };
    return { asked, pool };
  };

  it('caches per (server, address) case-insensitively, expires by TTL, and shares concurrent lookups', async () => {
    let t = 0;
    const { asked, pool } = recording({ 'a@x.test': 250, 'b@x.test': 550 });
    const v = createVerifier({ pool, negativeTtlMs: 100, now: () => t });
    const [one, two] = await Promise.all([
      v.check(server, 'a@x.test', 1000),
      v.check(server, 'A@x.test', 1000),
    ]);
    expect(one).toEqual({ fact: 'exists', reply: '250 x', cached: false });
    expect(two.fact).toBe('exists');
    expect(asked).toEqual(['a@x.test']);
    expect((await v.check(server, 'b@x.test', 1000)).fact).toBe('absent');
    t = 99;
    expect(await v.check(server, 'b@x.test', 1000)).toMatchObject({ fact: 'absent', cached: true });
    t = 100;
    await v.check(server, 'b@x.test', 1000);
    expect(asked.filter((a) => a === 'b@x.test')).toHaveLength(2);
    // another server is another entry
    await v.check({ ...server, port: 2525 }, 'a@x.test', 1000);
    expect(asked.filter((a) => a === 'a@x.test')).toHaveLength(2);
  });

  // (changed with the fix for a subaddress's answer recorded for its mailbox: the mailbox is now asked first, so the
  // one callout is about alice@, and an absent mailbox costs one callout more, once per negative TTL)
  it('a subaddress is answered by its mailbox when that exists: alice+1, alice+2, ... cost one callout', async () => {
    const { asked, pool } = recording({
      'alice@x.test': 250,
      'bob@x.test': 550,
      'bob+1@x.test': 550,
      'bob+2@x.test': 550,
      'carol@x.test': 250,
    });
    const v = createVerifier({ pool });
    expect(await v.check(server, 'alice+1@x.test', 1000, undefined, 'alice@x.test')).toMatchObject({
      fact: 'exists',
      cached: false,
    });
    expect(await v.check(server, 'alice+2@x.test', 1000, undefined, 'alice@x.test')).toMatchObject({
      fact: 'exists',
      cached: true,
    });
    // the mailbox itself, asked later, is known too
    expect(await v.check(server, 'alice@x.test', 1000)).toMatchObject({ fact: 'exists', cached: true });
    expect(asked).toEqual(['alice@x.test']);
    // an absent mailbox: each subaddress is asked itself (the mailbox once)
    await v.check(server, 'bob+1@x.test', 1000, undefined, 'bob@x.test');
    await v.check(server, 'bob+2@x.test', 1000, undefined, 'bob@x.test');
    expect(asked.filter((a) => a.startsWith('bob'))).toEqual(['bob@x.test', 'bob+1@x.test', 'bob+2@x.test']);
    // a mailbox asked about first answers for its subaddresses
    await v.check(server, 'carol@x.test', 1000);
    expect(await v.check(server, 'carol+x@x.test', 1000, undefined, 'carol@x.test')).toMatchObject({
      fact: 'exists',
      cached: true,
    });
    expect(asked.filter((a) => a.startsWith('carol'))).toEqual(['carol@x.test']);
  });

  it('a mailbox entry expires with its TTL, and is per server', async () => {
    let t = 0;
    const { asked, pool } = recording({ 'a@x.test': 250 });
    const v = createVerifier({ pool, now: () => t });
    await v.check(server, 'a+1@x.test', 1000, undefined, 'a@x.test');
    t = 999;
    await v.check(server, 'a+2@x.test', 1000, undefined, 'a@x.test');
    t = 1000;
    await v.check(server, 'a+2@x.test', 1000, undefined, 'a@x.test');
    await v.check({ ...server, port: 2525 }, 'a+1@x.test', 1000, undefined, 'a@x.test');
    expect(asked).toEqual(['a@x.test', 'a@x.test', 'a@x.test']);
  });

  it('a 553 5.6.7 and a server without SMTPUTF8 are unknown, cached as unknown (30 s, not 10 min), and logged', async () => {
    let t = 0;
    const asked: string[] = [];
    const pool: CalloutPool = {
      probe: (_s, a) => {
        asked.push(a);
        return Promise.resolve<CalloutProbe>(
          a.endsWith('@pf.test')
            ? { kind: 'reply', code: 553, text: '553 5.6.7 Must declare SMTPUTF8 to send unicode address' }
            : { kind: 'unsupported', text: 'no SMTPUTF8' },
        );
      },
      stats: () => ({ connections: 0, waiting: 0 }),
      close: () => undefined,
    };
    const warned: Record<string, unknown>[] = [];
    const v = createVerifier({ pool, now: () => t, log: { warn: (obj) => warned.push(obj) } });
    expect(await v.check(server, 'josé@pf.test', 3_600_000)).toEqual({
      fact: 'unknown',
      reply: '553 5.6.7 Must declare SMTPUTF8 to send unicode address',
      cached: false,
    });
    expect(await v.check(server, 'josé@old.test', 3_600_000)).toEqual({
      fact: 'unknown',
      reply: 'unsupported: no SMTPUTF8',
      cached: false,
    });
    expect(warned).toEqual([
      {
        server: 'old',
        host: '127.0.0.1',
        port: 25,
        reply: '553 5.6.7 Must declare SMTPUTF8 to send unicode address',
      },
      { server: 'old', host: '127.0.0.1', port: 25, reply: 'unsupported: no SMTPUTF8' },
    ]);
    t = 29_999;
    expect(await v.check(server, 'josé@pf.test', 3_600_000)).toMatchObject({ fact: 'unknown', cached: true });
    expect(await v.check(server, 'josé@old.test', 3_600_000)).toMatchObject({
      fact: 'unknown',
      cached: true,
    });
    t = 30_000;
    await v.check(server, 'josé@pf.test', 3_600_000);
    await v.check(server, 'josé@old.test', 3_600_000);
    expect(asked).toEqual(['josé@pf.test', 'josé@old.test', 'josé@pf.test', 'josé@old.test']);
  });

  it('does not cache a failure to get an answer', async () => {
    const { asked, pool } = recording({});
    const v = createVerifier({ pool });
    expect(await v.check(server, 'c@x.test', 1000)).toEqual({
      fact: 'unknown',
      reply: 'failed: down',
      cached: false,
    });
    await v.check(server, 'c@x.test', 1000);
    expect(asked).toHaveLength(2);
  });
});

describe('factOfReply: a 550/551/553 is absent only when it refuses the address', () => {
  it.each<[string, string, MailboxFact]>([
    // the callout itself refused: every real mailbox was taken for absent
    [
      'postscreen',
      '550 5.7.1 Service unavailable; client [192.0.2.1] blocked using zen.spamhaus.org',
      'unknown',
    ],
    ['Microsoft 365, banned IP', '550 5.7.606 Access denied, banned sending IP [192.0.2.1]', 'unknown'],
    [
      'Postfix refusing the null sender at RCPT',
      '550 5.7.1 <>: Sender address rejected: Access denied',
      'unknown',
    ],
    ['a sender status (X.1.8)', '553 5.1.8 <>: Sender address rejected: Domain not found', 'unknown'],
    ['Exim, AUTH', '550 Authentication required', 'unknown'],
    ['Exim, TLS', '550 STARTTLS required', 'unknown'],
    ['Exim, ACL', '550 Administrative prohibition', 'unknown'],
    ['relaying', '550 Relaying denied', 'unknown'],
    ['a block list', '550 Your IP 192.0.2.1 is blacklisted', 'unknown'],
    ['spam', '550 Message rejected as spam', 'unknown'],
    ['policy', '553 Rejected by local policy', 'unknown'],
    ['too many', '550 Too many invalid recipients', 'unknown'],
    ['the sender, without a status', '550 <>: Sender address rejected', 'unknown'],
    [
      "qmail's status at the end",
      "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
      'unknown',
    ],
    ['mail system (X.3)', '550 5.3.0 Mail system error', 'unknown'],
    ['protocol (X.5)', '550 5.5.1 Bad sequence of commands', 'unknown'],
    ['routing (X.4.4)', '550 5.4.4 Unable to route', 'unknown'],
    ['mailbox full (X.2.2): the mailbox is there', '550 5.2.2 Mailbox full', 'unknown'],
    ['X.0.0 says nothing: the text decides', '550 5.0.0 Access denied', 'unknown'],
    // the mailbox is not there
    [
      'Postfix',
      '550 5.1.1 <x@example.com>: Recipient address rejected: User unknown in virtual mailbox table',
      'absent',
    ],
    [
      'Exchange',
      '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup',
      'absent',
    ],
    ['Gmail', '550-5.1.1 The email account that you tried to reach does not exist. Please try', 'absent'],
    [
      'Microsoft 365 (directory-based edge blocking)',
      '550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [host.test]',
      'absent',
    ],
    ['Exim', '550 Unrouteable address', 'absent'],
    ['cPanel', '550 No such user here', 'absent'],
    [
      'Postfix without enhanced codes: the table name is no policy',
      '550 <x@example.com>: Recipient address rejected: User unknown in relay recipient table',
      'absent',
    ],
    [
      'mailbox disabled (X.2.1)',
      '550-5.2.1 The email account that you tried to reach is disabled.',
      'absent',
    ],
    ['moved (X.1.6)', '551 5.1.6 User has moved', 'absent'],
    ['X.1.0', '550 5.1.0 Address rejected', 'absent'],
    ["qmail's 5.1.1", '550 sorry, no mailbox here by that name. (#5.1.1)', 'absent'],
    ['the echoed address is no cause', '550 <blockley@example.com> rejected', 'absent'],
    ['X.0.0 with no cause named', '550 5.0.0 Requested action not taken: mailbox unavailable', 'absent'],
  ])('%s: %s -> %s', (_name, text, fact) => {
    expect(factOfReply(Number(text.slice(0, 3)), text)).toBe(fact);
  });

  it.each([
    ['550 5.1.1 x', { subject: 1, detail: 1 }],
    ['550-5.1.10 x', { subject: 1, detail: 10 }],
    ['553 sorry (#5.7.1)', { subject: 7, detail: 1 }],
    ['550 4.6.7.1 odd', undefined],
    ['550 no status', undefined],
  ] as const)('enhancedStatusOf(%j)', (text, want) => {
    expect(enhancedStatusOf(text)).toEqual(want);
  });
});

describe('noAnswerWarning: why recipients are tempfailed, once per server per minute', () => {
  const server = (name: string, port = 25): ServerRoute => ({
    name,
    host: '127.0.0.1',
    port,
    mx: false,
    tls: 'None',
    maxConnections: 1,
  });

  it('warns with the server and the reply, counts what it held back, and forgets the oldest server first', () => {
    let t = 0;
    const lines: Record<string, unknown>[] = [];
    const warn = noAnswerWarning({ warn: (obj) => lines.push(obj) }, () => t, 60_000, 2);
    warn(server('old'), 'failed', 'MAIL FROM:<>: 550 5.7.1 null sender refused');
    warn(server('old'), 'suspended', 'callouts suspended: AUTH failed');
    t = 59_999;
    warn(server('old'), 'failed', 'again');
    expect(lines).toEqual([
      {
        server: 'old',
        host: '127.0.0.1',
        port: 25,
        result: 'failed',
        reply: 'MAIL FROM:<>: 550 5.7.1 null sender refused',
        suppressed: 0,
      },
    ]);
    t = 60_000;
    warn(server('old'), 'suspended', 'callouts suspended: x');
    expect(lines[1]).toMatchObject({ result: 'suspended', suppressed: 2 });
    // another server is its own
    warn(server('other', 2525), 'failed', 'ECONNREFUSED');
    expect(lines).toHaveLength(3);
    // a third server pushes the least recently warned about (old) out: old warns again at once
    warn(server('third', 2526), 'failed', 'x');
    warn(server('old'), 'failed', 'y');
    expect(lines).toHaveLength(5);
  });
});

describe('cacheSpelling: NFC and NFD spellings are one entry', () => {
  it('josé@ as é and as e + U+0301 make one callout, which carries the address as the client sent it', async () => {
    const nfc = 'jos\u00e9@x.test';
    const nfd = 'jose\u0301@x.test';
    expect(cacheSpelling(nfd)).toBe(cacheSpelling(nfc));
    expect(cacheSpelling('Alice@X.test')).toBe('alice@x.test');
    const asked: string[] = [];
    const pool: CalloutPool = {
      probe: (_s, a) => {
        asked.push(a);
        return Promise.resolve<CalloutProbe>({ kind: 'reply', code: 250, text: '250 ok' });
      },
      stats: () => ({ connections: 0, waiting: 0 }),
      close: () => undefined,
    };
    const v = createVerifier({ pool });
    expect((await v.check(server, nfd, 1000)).fact).toBe('exists');
    expect(await v.check(server, nfc, 1000)).toMatchObject({ fact: 'exists', cached: true });
    expect(asked).toEqual([nfd]);
  });
});

describe('catch-all detection: an address that cannot exist, asked after a callout', () => {
  const PROBE = /^mailrouteprobe[a-z2-7]{16}@/;
  const HOUR = 3_600_000;
  const REFUSES = 'recipient verification: the server refuses an address that cannot exist (no catch-all)';
  const NO_ANSWER =
    'recipient verification: no answer about an address that cannot exist (catch-all unknown)';

  /**
   * A verifier over a pool that answers a client callout at once (250; `failed` for an address starting with "down",
   * 550 5.1.1 for "gone", 451 for "later"), and each catch-all probe (a background one) with the next of `probeAnswers` (default: 250) only when the
   * test calls release().
   */
  const setup = (negativeTtlMs = 600_000) => {
    const clock = { t: 0 };
    const asked: { address: string; background: boolean; destinations: unknown }[] = [];
    const probeAnswers: CalloutProbe[] = [];
    const held: (() => void)[] = [];
    const p: CalloutPool = {
      probe: (_s, address, destinations, options) => {
        const background = options?.background === true;
        asked.push({ address, background, destinations });
        if (!background)
          return Promise.resolve<CalloutProbe>(
            address.startsWith('down')
              ? { kind: 'failed', text: 'ECONNREFUSED' }
              : address.startsWith('gone')
                ? { kind: 'reply', code: 550, text: '550 5.1.1 no such user' }
                : address.startsWith('later')
                  ? { kind: 'reply', code: 451, text: '451 4.3.0 try later' }
                  : { kind: 'reply', code: 250, text: '250 x' },
          );
        const answer = probeAnswers.shift() ?? { kind: 'reply', code: 250, text: '250 2.1.5 ok' };
        return new Promise<CalloutProbe>((resolve) => held.push(() => resolve(answer)));
      },
      stats: () => ({ connections: 0, waiting: 0 }),
      close: () => undefined,
    };
    const metrics = createRelayMetrics(new Registry(), false);
    const warned: { obj: Record<string, unknown>; msg: string }[] = [];
    const debug: { obj: Record<string, unknown>; msg: string }[] = [];
    const v = createVerifier({
      pool: p,
      negativeTtlMs,
      now: () => clock.t,
      metrics,
      detectCatchAll: true,
      log: { warn: (obj, msg) => warned.push({ obj, msg }), debug: (obj, msg) => debug.push({ obj, msg }) },
    });
    /** Answers every probe held so far, and lets the verifier take the answers in. */
    const release = async (): Promise<void> => {
      for (const r of held.splice(0)) r();
      await new Promise((r) => setImmediate(r));
    };
    const probes = (): string[] => asked.filter((a) => a.background).map((a) => a.address);
    const gauge = async (): Promise<Record<string, number>> => {
      const got = await metrics.calloutCatchAll.get();
      return Object.fromEntries(got.values.map((x) => [`${x.labels.server}/${x.labels.domain}`, x.value]));
    };
    let n = 0;
    /** At `t`, a callout about an address not asked before (and the probe's answer, if one is made). */
    const calloutAt = async (t: number, domain = 'x.test', ttl = HOUR): Promise<void> => {
      clock.t = t;
      await v.check(server, `u${n++}@${domain}`, ttl);
      await release();
    };
    return { clock, asked, probeAnswers, release, probes, metrics, warned, debug, v, gauge, calloutAt };
  };

  it('catchAllProbeAddress: mailrouteprobe + 16 base32 characters of 80 random bits, a new one each time', () => {
    expect(catchAllProbeAddress('x.test', () => Buffer.from('foobarfoob'))).toBe(
      'mailrouteprobemzxw6ytbojtg633c@x.test',
    );
    expect(catchAllProbeAddress('x.test', () => Buffer.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]))).toBe(
      'mailrouteprobeaaaqeayeaudaocaj@x.test',
    );
    expect(catchAllProbeAddress('x.test', () => Buffer.alloc(10, 0xff))).toBe(
      'mailrouteprobe7777777777777777@x.test',
    );
    const many = Array.from({ length: 1000 }, () => catchAllProbeAddress('x.test'));
    expect(many.every((a) => /^mailrouteprobe[a-z2-7]{16}@x\.test$/.test(a))).toBe(true);
    expect(new Set(many).size).toBe(1000);
  });

  it('a catch-all: the client is answered first; then one probe, a warning naming the fix, and the gauge 1', async () => {
    const s = setup();
    const destinations = { allow: [], deny: ['10.0.0.0/8'] };
    // the client's answer does not wait for the probe (held until release())
    expect(await s.v.check(server, 'alice@x.test', HOUR, destinations)).toEqual({
      fact: 'exists',
      reply: '250 x',
      cached: false,
    });
    expect(s.asked).toEqual([
      { address: 'alice@x.test', background: false, destinations },
      { address: expect.stringMatching(PROBE) as unknown, background: true, destinations },
    ]);
    expect(s.probes()[0]).toMatch(/@x\.test$/);
    expect(s.warned).toEqual([]);
    await s.release();
    expect(s.warned).toHaveLength(1);
    expect(s.warned[0]?.obj).toEqual({
      server: 'old',
      host: '127.0.0.1',
      port: 25,
      domain: 'x.test',
      probe: s.probes()[0],
      reply: '250 2.1.5 ok',
      periodSeconds: 600,
    });
    const msg = s.warned[0]?.msg ?? '';
    expect(msg).toMatch(/^recipient verification: the server accepts any recipient \(a catch-all\)/);
    expect(msg).toContain('In Split every recipient goes to it');
    expect(msg).toContain('spec.accounts ({server: old, addresses: [...]})');
    expect(msg).toContain('take it out of spec.recipientVerification');
    expect(await s.gauge()).toEqual({ 'old/x.test': 1 });
    // the server's answers stand; the probe's is neither cached nor counted as a callout
    expect((await s.v.check(server, 'bob@x.test', HOUR)).fact).toBe('exists');
    expect(s.v.size).toBe(2);
    const callouts = await s.metrics.callouts.get();
    expect(callouts.values.map((x) => [x.labels.result, x.value])).toEqual([['exists', 2]]);
  });

  it('at most once per (server, domain) per min(cacheTTL, negative TTL), one warning each; concurrent callouts make one', async () => {
    const s = setup();
    await Promise.all(Array.from({ length: 10 }, (_, i) => s.v.check(server, `c${i}@x.test`, HOUR)));
    expect(s.probes()).toHaveLength(1);
    await s.release();
    for (let i = 0; i < 10; i++) await s.calloutAt(599_999);
    expect(s.probes()).toHaveLength(1);
    expect(s.warned).toHaveLength(1);
    // another domain of the server is its own, and so is another server
    await s.calloutAt(599_999, 'y.test');
    expect(s.probes()).toHaveLength(2);
    expect(s.probes()[1]).toMatch(/@y\.test$/);
    await s.v.check({ ...server, name: 'other', port: 2525 }, 'z@x.test', HOUR);
    await s.release();
    expect(s.probes()).toHaveLength(3);
    expect(await s.gauge()).toEqual({ 'old/x.test': 1, 'old/y.test': 1, 'other/x.test': 1 });
    // the period is over: asked again (a new address), and warned again
    await s.calloutAt(600_000);
    expect(s.probes()).toHaveLength(4);
    expect(new Set(s.probes()).size).toBe(4);
    expect(s.warned.map((w) => [w.obj.server, w.obj.domain])).toEqual([
      ['old', 'x.test'],
      ['old', 'y.test'],
      ['other', 'x.test'],
      ['old', 'x.test'],
    ]);
    // a cacheTTL under the negative TTL is the period
    await s.calloutAt(1_200_000, 'x.test', 60_000);
    await s.calloutAt(1_259_999, 'x.test', 60_000);
    expect(s.probes()).toHaveLength(5);
    await s.calloutAt(1_260_000, 'x.test', 60_000);
    expect(s.probes()).toHaveLength(6);
  });

  it('refused as no mailbox: the gauge 0, no warning; 4xx, a 5xx about something else, no answer: unchanged', async () => {
    const s = setup();
    s.probeAnswers.push(
      { kind: 'reply', code: 550, text: '550 5.1.1 no such user' },
      { kind: 'reply', code: 451, text: '451 4.7.1 greylisted' },
      { kind: 'reply', code: 250, text: '250 ok' },
      { kind: 'reply', code: 550, text: '550 5.7.1 client blocked using zen.spamhaus.org' },
      { kind: 'failed', text: 'ECONNRESET' },
      { kind: 'reply', code: 550, text: '550 5.1.1 no such user' },
    );
    const gaugeAfterCalloutAt = async (t: number) => {
      await s.calloutAt(t);
      return s.gauge();
    };
    expect(await gaugeAfterCalloutAt(0)).toEqual({ 'old/x.test': 0 });
    expect(await gaugeAfterCalloutAt(600_000)).toEqual({ 'old/x.test': 0 }); // 451
    expect(await gaugeAfterCalloutAt(1_200_000)).toEqual({ 'old/x.test': 1 }); // 250
    expect(await gaugeAfterCalloutAt(1_800_000)).toEqual({ 'old/x.test': 1 }); // 550 about the client
    expect(await gaugeAfterCalloutAt(2_400_000)).toEqual({ 'old/x.test': 1 }); // no answer
    expect(await gaugeAfterCalloutAt(3_000_000)).toEqual({ 'old/x.test': 0 }); // the catch-all is off
    expect(s.probes()).toHaveLength(6);
    expect(s.warned).toHaveLength(1);
    expect(s.debug.map((d) => d.msg)).toEqual([REFUSES, NO_ANSWER, NO_ANSWER, NO_ANSWER, REFUSES]);
    expect(s.debug[1]?.obj).toMatchObject({
      domain: 'x.test',
      reply: '451 4.7.1 greylisted',
      catchAll: false,
    });
  });

  it('no probe after an answer other than exists, nor after a cached one; busy or suspended start no period', async () => {
    const s = setup();
    // no answer, absent (a refusal is no catch-all's), unknown (routes nothing): no probe
    expect(await s.v.check(server, 'down1@x.test', HOUR)).toMatchObject({ fact: 'unknown', cached: false });
    expect(await s.v.check(server, 'gone1@x.test', HOUR)).toMatchObject({ fact: 'absent', cached: false });
    expect(await s.v.check(server, 'later1@x.test', HOUR)).toMatchObject({ fact: 'unknown', cached: false });
    await s.release();
    expect(s.asked.map((a) => a.address)).toEqual(['down1@x.test', 'gone1@x.test', 'later1@x.test']);
    s.probeAnswers.push({ kind: 'busy', text: 'busy' }, { kind: 'suspended', text: 'suspended' });
    await s.calloutAt(0);
    expect(s.probes()).toHaveLength(1);
    await s.calloutAt(1);
    expect(s.probes()).toHaveLength(2);
    expect(await s.gauge()).toEqual({});
    await s.calloutAt(2);
    expect(s.probes()).toHaveLength(3);
    expect(await s.gauge()).toEqual({ 'old/x.test': 1 });
    // answered from the cache: no callout, no probe, even after the period
    s.clock.t = 600_002;
    expect(await s.v.check(server, 'u2@x.test', HOUR)).toMatchObject({ cached: true });
    expect(s.probes()).toHaveLength(3);
  });

  it("the series goes once the server has had no callout for the domain for the domain's cacheTTL", async () => {
    const s = setup();
    await s.calloutAt(0, 'x.test', HOUR);
    await s.calloutAt(1000, 'x.test', HOUR);
    s.clock.t = HOUR + 999;
    expect(await s.gauge()).toEqual({ 'old/x.test': 1 });
    s.clock.t = HOUR + 1000;
    expect(await s.gauge()).toEqual({});
    // asked about again: at once (the period is long over), and shown again
    await s.calloutAt(HOUR + 2000);
    expect(s.probes()).toHaveLength(2);
    expect(await s.gauge()).toEqual({ 'old/x.test': 1 });
  });
});
