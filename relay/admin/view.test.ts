import { describe, expect, it } from 'vitest';
import type { Leg } from '../../routing/model.ts';
import type { LegState, SpoolState } from '../spool/types.ts';
import { messageView } from './view.ts';

const srv = (name: string) => ({
  name,
  host: '10.0.0.1',
  port: 25,
  mx: false,
  tls: 'None' as const,
  maxConnections: 1,
});
const leg = (
  recipient: string,
  role: Leg['role'],
  state: LegState['state'],
  extra: Partial<LegState> = {},
): LegState => ({
  recipient,
  leg:
    role === 'primary'
      ? { server: srv('legacy'), recipient, role, bounces: 'Notify' }
      : { server: srv('zoho'), recipient: `c-${recipient}`, role, bounces: 'Suppress' },
  state,
  attempts: 0,
  ...extra,
});
const state = (legs: LegState[]): SpoolState => ({
  version: 1,
  id: '0000000000000abc',
  meta: {
    mailFrom: 'a@s',
    clientAddress: '',
    clientHostname: '',
    helo: '',
    receivedAt: '2026-01-01T00:00:00Z',
    revision: '',
    smtputf8: false,
    body8bit: false,
  },
  size: 10,
  legs,
});

describe('messageView', () => {
  it.each([
    [
      'primary delivered, copy deferred',
      [
        leg('bob@x', 'primary', 'delivered'),
        leg('bob@x', 'copy', 'deferred', { attempts: 2, nextAttemptAt: 'T', lastReply: '450 busy' }),
      ],
      'deferred',
      ['primary delivered, copy deferred'],
    ],
    [
      'two recipients',
      [
        leg('bob@x', 'primary', 'pending'),
        leg('carol@x', 'primary', 'failed'),
        leg('carol@x', 'copy', 'suppressed'),
      ],
      'pending',
      ['primary pending', 'primary failed, copy suppressed'],
    ],
    ['all final', [leg('bob@x', 'primary', 'delivered')], 'done', ['primary delivered']],
  ] as const)('%s', (_n, legs, want, summaries) => {
    const v = messageView(state([...legs]));
    expect(v.state).toBe(want);
    expect(v.recipients.map((r) => r.summary)).toEqual(summaries);
  });
  it('keeps retry details per leg', () => {
    const v = messageView(
      state([leg('bob@x', 'copy', 'deferred', { attempts: 2, nextAttemptAt: 'T', lastReply: '450 busy' })]),
    );
    expect(v.recipients[0]?.legs[0]).toEqual({
      role: 'copy',
      server: 'zoho',
      address: '10.0.0.1:25',
      recipient: 'c-bob@x',
      state: 'deferred',
      attempts: 2,
      nextAttemptAt: 'T',
      lastReply: '450 busy',
    });
  });

  it.each<[string, Partial<LegState>, boolean]>([
    ['a 550 kept by softBounce', { state: 'deferred', lastReply: '550 5.1.1 <bob@x>: no such user' }, true],
    [
      'a 5xx with a multi-line reply',
      { state: 'deferred', lastReply: '554-5.7.1 not here\n554 5.7.1 go away' },
      true,
    ],
    [
      'a 552 too large, under softBounce',
      { state: 'deferred', lastReply: '552 5.3.4 message too big' },
      true,
    ],
    ['a 4xx', { state: 'deferred', lastReply: '450 4.2.0 busy' }, false],
    [
      '552 5.5.3 too many recipients (retried anyway)',
      { state: 'deferred', lastReply: '552 5.5.3 too many recipients' },
      false,
    ],
    [
      '552 without status: too many recipients',
      { state: 'deferred', lastReply: '552 Too many recipients' },
      false,
    ],
    ['a network error', { state: 'deferred', lastReply: 'connect ECONNREFUSED 127.0.0.1:25' }, false],
    ['a failed leg (bounced)', { state: 'failed', lastReply: '550 5.1.1 no such user' }, false],
    ['no reply yet', { state: 'deferred' }, false],
  ])('marks a leg kept by softBounce: %s', (_n, extra, want) => {
    const v = messageView(state([leg('bob@x', 'primary', extra.state ?? 'deferred', extra)]));
    expect(v.recipients[0]?.legs[0]?.softBounced === true).toBe(want);
  });
});
