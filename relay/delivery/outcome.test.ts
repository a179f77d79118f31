import { describe, expect, it } from 'vitest';
import type { Leg } from '../../routing/model.ts';
import type { LegState } from '../spool/types.ts';
import {
  applyOutcome,
  decideLeg,
  enhancedStatus,
  formatAttemptReply,
  MAX_KEPT_REPLY,
  isRecipientLimitReply,
  keptBySoftBounce,
  type AttemptReply,
} from './outcome.ts';
import { markRecipientLimit } from './attempt.ts';

const server = { name: 's', host: 'h', port: 25, mx: false, tls: 'None' as const, maxConnections: 1 };
/** A primary leg (the leg of record) always bounces Notify; only a copy leg takes the policy's bounces. */
const legOf = (role: Leg['role'], bounces: Leg['bounces'], attempts = 0): LegState => ({
  recipient: 'bob@example.com',
  leg:
    role === 'primary'
      ? { server, recipient: 'bob@example.com', role, bounces: 'Notify' }
      : { server, recipient: 'bob@example.com', role, bounces },
  state: attempts ? 'deferred' : 'pending',
  attempts,
});
const receivedAt = new Date('2026-01-01T00:00:00Z');
const ctx = (nowOffsetMs: number, nullSender = false) => ({
  now: new Date(receivedAt.getTime() + nowOffsetMs),
  receivedAt,
  retryScheduleMs: [1000, 5000],
  maxQueueLifetimeMs: 60_000,
  nullSender,
});
const smtp = (code: number, text: string): AttemptReply => ({ kind: 'smtp', code, text });

describe('decideLeg', () => {
  it.each([
    ['250 on primary', legOf('primary', 'Notify'), smtp(250, '250 2.0.0 ok'), ctx(0), { state: 'delivered' }],
    [
      '550 on primary',
      legOf('primary', 'Notify'),
      smtp(550, '550 5.1.1 no such user'),
      ctx(0),
      { state: 'failed', status: '5.1.1', dsn: true, expired: false },
    ],
    [
      '550 on primary, null sender',
      legOf('primary', 'Notify'),
      smtp(550, '550 5.1.1 no'),
      ctx(0, true),
      { state: 'failed', dsn: false },
    ],
    [
      '550 on copy with Suppress',
      legOf('copy', 'Suppress'),
      smtp(550, '550 5.1.1 no'),
      ctx(0),
      { state: 'suppressed', status: '5.1.1' },
    ],
    [
      // a message spooled before every plan had a leg of record: its lone copy is the only mailbox
      '550 on copy with Suppress whose recipient has no leg of record',
      legOf('copy', 'Suppress'),
      smtp(550, '550 5.1.1 no'),
      { ...ctx(0), recipientHasRecord: false },
      { state: 'failed', status: '5.1.1', dsn: true },
    ],
    [
      'expiry of a copy with Suppress whose recipient has no leg of record',
      legOf('copy', 'Suppress', 4),
      { kind: 'network', text: 'ETIMEDOUT' },
      { ...ctx(61_000), recipientHasRecord: false },
      { state: 'failed', status: '4.4.7', expired: true, dsn: true },
    ],
    [
      '550 on copy with Notify',
      legOf('copy', 'Notify'),
      smtp(550, '550 no'),
      ctx(0),
      { state: 'failed', status: '5.0.0', dsn: true },
    ],
    [
      '450 first time',
      legOf('primary', 'Notify'),
      smtp(450, '450 4.2.0 busy'),
      ctx(0),
      { state: 'deferred', nextAttemptAt: new Date(receivedAt.getTime() + 1000) },
    ],
    [
      '450 third time uses the last step',
      legOf('primary', 'Notify', 2),
      smtp(451, 'later'),
      ctx(10_000),
      { state: 'deferred', nextAttemptAt: new Date(receivedAt.getTime() + 15_000), reply: '451 later' },
    ],
    [
      'connection refused',
      legOf('copy', 'Suppress'),
      { kind: 'network', text: 'ECONNREFUSED' },
      ctx(0),
      { state: 'deferred' },
    ],
    [
      '4xx at expiry on primary',
      legOf('primary', 'Notify', 4),
      smtp(421, '421 4.4.2 bye'),
      ctx(60_000),
      { state: 'failed', status: '4.4.7', expired: true, dsn: true },
    ],
    [
      'network error at expiry on a suppressed copy',
      legOf('copy', 'Suppress', 4),
      { kind: 'network', text: 'ETIMEDOUT' },
      ctx(61_000),
      { state: 'suppressed', status: '4.4.7', expired: true },
    ],
  ] as const)('%s', (_name, leg, reply, c, want) => {
    expect(decideLeg(leg, reply, c)).toMatchObject(want);
  });
});

describe('softBounce (a 5xx kept like a 4xx)', () => {
  const soft = (nowOffsetMs: number, nullSender = false) => ({
    ...ctx(nowOffsetMs, nullSender),
    softBounce: true,
  });
  it.each([
    [
      '550 on primary: deferred on the schedule, status in class 4, counted as soft_bounced',
      legOf('primary', 'Notify'),
      smtp(550, '550 5.1.1 no such user'),
      soft(0),
      {
        state: 'deferred',
        metric: 'soft_bounced',
        status: '4.1.1',
        reply: '550 5.1.1 no such user',
        nextAttemptAt: new Date(receivedAt.getTime() + 1000),
      },
    ],
    [
      '554 without an enhanced status: 4.0.0',
      legOf('primary', 'Notify'),
      smtp(554, '554 go away'),
      soft(0),
      { state: 'deferred', metric: 'soft_bounced', status: '4.0.0' },
    ],
    [
      '550 on a copy with Suppress: kept too (the test user gets the copy once the mailbox exists)',
      legOf('copy', 'Suppress'),
      smtp(550, '550 5.1.1 no'),
      soft(0),
      { state: 'deferred', metric: 'soft_bounced' },
    ],
    [
      '550 at expiry on primary: bounces as without softBounce (4.4.7, with the last reply)',
      legOf('primary', 'Notify', 4),
      smtp(550, '550 5.1.1 no such user'),
      soft(60_000),
      { state: 'failed', status: '4.4.7', expired: true, dsn: true },
    ],
    [
      '550 at expiry on a copy with Suppress: suppressed',
      legOf('copy', 'Suppress', 4),
      smtp(550, '550 5.1.1 no'),
      soft(61_000),
      { state: 'suppressed', status: '4.4.7', expired: true },
    ],
    [
      'a 4xx is an ordinary deferral',
      legOf('primary', 'Notify'),
      smtp(450, '450 4.2.0 busy'),
      soft(0),
      { state: 'deferred', metric: 'deferred', status: '4.2.0' },
    ],
    ['250 is delivered', legOf('primary', 'Notify'), smtp(250, '250 ok'), soft(0), { state: 'delivered' }],
  ] as const)('%s', (_name, leg, reply, c, want) => {
    expect(decideLeg(leg, reply, c)).toMatchObject(want);
  });

  it('owes the delay notice of a deferral past --delay-warning, not a failure notice', () => {
    const out = decideLeg(legOf('primary', 'Notify', 1), smtp(550, '550 5.1.1 no'), {
      ...soft(30_000),
      delayWarningMs: 20_000,
    });
    expect(out).toMatchObject({ state: 'deferred', delayDsn: true });
    const after = applyOutcome(
      legOf('primary', 'Notify', 1),
      out,
      new Date(receivedAt.getTime() + 30_000),
      's',
    );
    expect(after).toMatchObject({ state: 'deferred', status: '4.1.1', delayPending: true });
    expect(after.dsnPending).toBeUndefined();
  });

  it('a recipient limit refusal keeps its own handling (4.5.3)', () => {
    const reply: AttemptReply = {
      kind: 'smtp',
      code: 452,
      text: '452 4.5.3 too many recipients',
      recipientLimit: 'now',
    };
    expect(decideLeg(legOf('primary', 'Notify'), reply, soft(0))).toMatchObject({
      state: 'deferred',
      metric: 'deferred',
      status: '4.5.3',
    });
  });
});

describe('too many recipients in one transaction', () => {
  it.each<[string, AttemptReply, boolean]>([
    ['452 4.5.3', smtp(452, '452 4.5.3 Too many recipients'), true],
    [
      "Gmail's multi-line 452-4.5.3",
      smtp(452, '452-4.5.3 Your message has too many recipients.\n452 4.5.3 see'),
      true,
    ],
    ['552 5.5.3 (an older server)', smtp(552, '552 5.5.3 Too many recipients'), true],
    ['552 without a status, in words', smtp(552, '552 Too many recipients'), true],
    ['452 without a status, in words', smtp(452, '452 too many recipients for this message'), true],
    ['452 4.2.2 mailbox full: the recipient itself', smtp(452, '452 4.2.2 Mailbox full'), false],
    ['452 4.3.1 insufficient storage', smtp(452, '452 4.3.1 Insufficient system storage'), false],
    ['452 with another status and the words', smtp(452, '452 4.7.1 too many recipients today'), false],
    ['550 5.5.3', smtp(550, '550 5.5.3 Too many recipients'), false],
    ['451 4.5.3', smtp(451, '451 4.5.3 Too many recipients'), false],
    ['a network failure', { kind: 'network', text: 'too many recipients' }, false],
  ])('isRecipientLimitReply: %s -> %s', (_, reply, want) => {
    expect(isRecipientLimitReply(reply)).toBe(want);
  });

  const over = { kind: 'smtp' as const, code: 452, text: '452 4.5.3 Too many recipients' };
  it.each<[string, AttemptReply[], (string | undefined)[]]>([
    ['some taken: the refused ones go at once', [smtp(250, '250 ok'), over, over], [undefined, 'now', 'now']],
    ['none taken: on the schedule', [over, over], ['schedule', 'schedule']],
    [
      'the DATA failed for the ones taken: no progress, on the schedule',
      [smtp(451, '451 4.3.0 try later'), over],
      [undefined, 'schedule'],
    ],
    [
      'other refusals are left as they are',
      [smtp(250, '250 ok'), smtp(550, '550 5.1.1 no such user'), smtp(452, '452 4.2.2 full')],
      [undefined, undefined, undefined],
    ],
  ])('markRecipientLimit: %s', (_, replies, want) => {
    const marked = markRecipientLimit(new Map(replies.map((r, i) => [`r${i}@x`, r])));
    expect([...marked.values()].map((r) => (r.kind === 'smtp' ? r.recipientLimit : undefined))).toEqual(want);
  });

  it.each<[string, AttemptReply, number, object]>([
    [
      'now: deferred with its next attempt at once, status 4.5.3',
      { ...over, recipientLimit: 'now' },
      0,
      { state: 'deferred', nextAttemptAt: receivedAt, status: '4.5.3' },
    ],
    [
      'schedule: deferred on the retry schedule',
      { ...over, recipientLimit: 'schedule' },
      0,
      { state: 'deferred', nextAttemptAt: new Date(receivedAt.getTime() + 1000), status: '4.5.3' },
    ],
    [
      'a 552 marked is temporary too, never a bounce',
      { kind: 'smtp', code: 552, text: '552 5.5.3 Too many recipients', recipientLimit: 'schedule' },
      0,
      { state: 'deferred', status: '4.5.3' },
    ],
    [
      'the same 552 unmarked (no transaction said so) stays permanent',
      smtp(552, '552 5.5.3 Too many recipients'),
      0,
      { state: 'failed', status: '5.5.3' },
    ],
    [
      'after the queue lifetime it expires like any deferral',
      { ...over, recipientLimit: 'now' },
      61_000,
      { state: 'failed', status: '4.4.7', expired: true },
    ],
  ])('decideLeg, %s', (_, reply, at, want) => {
    expect(decideLeg(legOf('primary', 'Notify'), reply, ctx(at))).toMatchObject(want);
  });

  it('a leg sent on at once owes no delay notice for it; one left for the schedule does, past --delay-warning', () => {
    const late = { ...ctx(50_000), delayWarningMs: 40_000 };
    expect(decideLeg(legOf('primary', 'Notify'), { ...over, recipientLimit: 'now' }, late)).toMatchObject({
      state: 'deferred',
      delayDsn: false,
    });
    expect(
      decideLeg(legOf('primary', 'Notify'), { ...over, recipientLimit: 'schedule' }, late),
    ).toMatchObject({
      state: 'deferred',
      delayDsn: true,
    });
  });
});

describe('enhancedStatus and formatAttemptReply', () => {
  it.each([
    [smtp(550, '550 5.7.1 denied'), '5.7.1', '550 5.7.1 denied'],
    [smtp(552, 'mailbox full'), '5.0.0', '552 mailbox full'],
    [smtp(451, '451-4.3.0 multi\r\n451 4.3.0 line'), '4.3.0', '451-4.3.0 multi 451 4.3.0 line'],
    [{ kind: 'network', text: 'ECONNRESET' } as const, '4.4.1', 'ECONNRESET'],
    [{ kind: 'local', text: 'no credentials' } as const, '4.3.0', 'no credentials'],
  ])('%j', (reply, status, text) => {
    expect(enhancedStatus(reply)).toBe(status);
    expect(formatAttemptReply(reply)).toBe(text);
  });
  it('keeps at most MAX_KEPT_REPLY characters of a long reply, saying how much more there was', () => {
    const long = smtp(451, `451-4.3.0 ${'x'.repeat(5000)}\r\n451 4.3.0 end`);
    const kept = formatAttemptReply(long);
    expect(kept.startsWith('451-4.3.0 xxx')).toBe(true);
    expect(kept).toMatch(/\.\.\. \(\d+ more\)$/);
    expect(kept.length).toBeLessThan(MAX_KEPT_REPLY + 30);
    expect(enhancedStatus(long)).toBe('4.3.0');
    // exactly at the limit: kept whole
    const edge = smtp(550, `550 ${'y'.repeat(MAX_KEPT_REPLY - 4)}`);
    expect(formatAttemptReply(edge)).toBe(`550 ${'y'.repeat(MAX_KEPT_REPLY - 4)}`);
  });
});

describe('applyOutcome', () => {
  const now = new Date('2026-01-01T00:00:01Z');
  it('counts the attempt and records reply and server', () => {
    const leg = legOf('primary', 'Notify');
    const out = applyOutcome(leg, decideLeg(leg, smtp(450, '450 busy'), ctx(0)), now, '127.0.0.1:25');
    expect(out).toMatchObject({
      state: 'deferred',
      attempts: 1,
      lastReply: '450 busy',
      lastServer: '127.0.0.1:25',
    });
    const done = applyOutcome(out, decideLeg(out, smtp(250, '250 ok'), ctx(1000)), now, '127.0.0.1:25');
    expect(done).toMatchObject({ state: 'delivered', attempts: 2 });
    expect(done.nextAttemptAt).toBeUndefined();
  });
  it('marks a DSN pending for a failure that owes one, not for a null sender', () => {
    const leg = legOf('primary', 'Notify');
    expect(applyOutcome(leg, decideLeg(leg, smtp(550, '550 no'), ctx(0)), now, 'x').dsnPending).toBe(true);
    expect(
      applyOutcome(leg, decideLeg(leg, smtp(550, '550 no'), ctx(0, true)), now, 'x').dsnPending,
    ).toBeUndefined();
  });
});

describe('delay notices (--delay-warning)', () => {
  const now = new Date('2026-01-01T00:00:30Z');
  const busy = smtp(450, '450 4.2.0 busy');
  const withWarning = (offsetMs: number, warnMs: number, nullSender = false) => ({
    ...ctx(offsetMs, nullSender),
    delayWarningMs: warnMs,
  });
  const delayDsn = (leg: LegState, c: ReturnType<typeof withWarning>): boolean | undefined => {
    const o = decideLeg(leg, busy, c);
    return o.state === 'deferred' ? o.delayDsn : undefined;
  };
  it.each([
    ['before the warning time', legOf('primary', 'Notify', 1), withWarning(9_999, 10_000), false],
    ['at the warning time', legOf('primary', 'Notify', 1), withWarning(10_000, 10_000), true],
    ['warning off (0)', legOf('primary', 'Notify', 1), withWarning(50_000, 0), false],
    ['a copy that bounces (Notify)', legOf('copy', 'Notify', 1), withWarning(10_000, 10_000), true],
    ['a suppressed copy: never', legOf('copy', 'Suppress', 1), withWarning(10_000, 10_000), false],
    ['null sender: never', legOf('primary', 'Notify', 1), withWarning(10_000, 10_000, true), false],
    [
      'already notified: at most once per leg',
      { ...legOf('primary', 'Notify', 1), delayDsnId: 'abc' },
      withWarning(20_000, 10_000),
      false,
    ],
    [
      'a notice still pending',
      { ...legOf('primary', 'Notify', 1), delayPending: true },
      withWarning(20_000, 10_000),
      false,
    ],
  ])('%s', (_name, leg, c, expected) => expect(delayDsn(leg, c)).toBe(expected));

  it('applyOutcome marks the notice pending on the deferral and drops it once the leg is final', () => {
    const leg = legOf('primary', 'Notify', 1);
    const deferred = applyOutcome(leg, decideLeg(leg, busy, withWarning(10_000, 10_000)), now, 'x');
    expect(deferred).toMatchObject({ state: 'deferred', delayPending: true });
    const delivered = applyOutcome(deferred, decideLeg(deferred, smtp(250, '250 ok'), ctx(11_000)), now, 'x');
    expect(delivered.delayPending).toBeUndefined();
    const failed = applyOutcome(deferred, decideLeg(deferred, smtp(550, '550 no'), ctx(11_000)), now, 'x');
    expect(failed).toMatchObject({ state: 'failed', dsnPending: true });
    expect(failed.delayPending).toBeUndefined();
  });
});

describe('keptBySoftBounce: read back from the stored leg, it agrees with decideLeg', () => {
  it.each<[string, AttemptReply, boolean, boolean]>([
    ['550 under softBounce', smtp(550, '550 5.1.1 no such user'), true, true],
    ['554 multi-line under softBounce', smtp(554, '554-5.7.1 no\n554 5.7.1 relay denied'), true, true],
    ['550 without softBounce: failed, not kept', smtp(550, '550 5.1.1 no such user'), false, false],
    ['451', smtp(451, '451 4.3.0 try later'), true, false],
    ['552 5.5.3 too many recipients, no progress', smtp(552, '552 5.5.3 too many recipients'), true, false],
    ['a connection refused', { kind: 'network', text: 'connect ECONNREFUSED' }, true, false],
  ])('%s', (_n, reply, softBounce, want) => {
    const marked = markRecipientLimit(new Map([['bob@example.com', reply]])).get('bob@example.com') ?? reply;
    const outcome = decideLeg(legOf('primary', 'Notify'), marked, { ...ctx(0), softBounce });
    expect(outcome.metric === 'soft_bounced').toBe(want);
    const stored = applyOutcome(legOf('primary', 'Notify'), outcome, ctx(0).now, 'h:25');
    expect(keptBySoftBounce(stored)).toBe(want);
  });
});
