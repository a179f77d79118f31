import { describe, expect, it } from 'vitest';
import type { CompileIssue } from '../../routing/model.ts';
import { WALL_CLOCK_RECHECK_MS, decideStatus, statusEvents, type StatusFacts } from './status.ts';

const now = new Date('2026-11-28T12:00:00Z');
const OLD = '8a6575315969ba1b6ecbc0bb59b7d3bfd1f1da2a5e37c5c3c5e6f1d2b0a9e8f7';
const base: StatusFacts = {
  kind: 'DeliveryPolicy',
  generation: 2,
  issues: [],
  missingSecrets: [],
  compiledGeneration: 2,
  compiled: true,
  relays: [
    { name: 'mailroute-relay-a', revision: 'r2' },
    { name: 'mailroute-relay-b', revision: 'r2' },
  ],
  generationIn: (rev) => ({ r1: 1, r2: 2, r3: 2 })[rev],
  now,
};
const conflict: CompileIssue = {
  kind: 'DeliveryPolicy',
  namespace: 'ns',
  name: 'p2',
  condition: 'Accepted',
  reason: 'Conflict',
  field: 'spec.domainRef',
  message: 'MailDomain ns/d already has DeliveryPolicy p1',
};
const dangling: CompileIssue = {
  kind: 'TestRecipient',
  namespace: 'ns',
  name: 't',
  condition: 'ResolvedRefs',
  reason: 'PolicyNotFound',
  field: 'spec.policyRef.name',
  message: 'no DeliveryPolicy "nope"',
};

type Row = [string, Partial<StatusFacts>, Record<string, string>, string];
const rows: Row[] = [
  [
    'all relays at a revision with this generation',
    {},
    { Accepted: 'True', ResolvedRefs: 'True', Programmed: 'True/Programmed', Ready: 'True/Ready' },
    '2/2 relays programmed',
  ],
  [
    'a newer revision that keeps the generation counts',
    {
      relays: [
        { name: 'a', revision: 'r3' },
        { name: 'b', revision: 'r2' },
      ],
    },
    { Programmed: 'True/Programmed', Ready: 'True/Ready' },
    '2/2 relays programmed',
  ],
  [
    'one relay still on an old generation',
    {
      relays: [
        { name: 'a', revision: 'r1' },
        { name: 'b', revision: 'r2' },
      ],
    },
    { Programmed: 'False/Pending', Ready: 'False/Pending' },
    '1/2 relays programmed; serving an older revision: a (r1)',
  ],
  [
    'unknown revision does not count',
    {
      relays: [
        { name: 'a', revision: 'zzz' },
        { name: 'b', revision: undefined },
      ],
    },
    { Programmed: 'False/Pending' },
    '0/2 relays programmed; serving an older revision: a (zzz), b (no revision)',
  ],
  [
    'no relays',
    { relays: [] },
    { Programmed: 'False/NoRelays', Ready: 'False/NoRelays' },
    '0/0 relays programmed',
  ],
  [
    'StatefulSet wants 2, one relay has reported: the other is named',
    {
      expectedRelays: ['mailroute-relay-0', 'mailroute-relay-1'],
      relays: [{ name: 'mailroute-relay-mailroute-relay-0', revision: 'r2' }],
    },
    { Programmed: 'False/Pending', Ready: 'False/Pending' },
    '1/2 relays programmed; mailroute-relay-1 has not reported',
  ],
  [
    'StatefulSet wants 2, both report; a relay outside it (scaled down, still beating) is not counted',
    {
      expectedRelays: ['mailroute-relay-0', 'mailroute-relay-1'],
      relays: [
        { name: 'mailroute-relay-mailroute-relay-0', revision: 'r2' },
        { name: 'mailroute-relay-mailroute-relay-1', revision: 'r2' },
        { name: 'mailroute-relay-mailroute-relay-2', revision: 'r1' },
      ],
    },
    { Programmed: 'True/Programmed', Ready: 'True/Ready' },
    '2/2 relays programmed',
  ],
  [
    'a relay alive on an older revision is named with the revision it serves (12 hex digits), by its pod',
    {
      expectedRelays: ['mailroute-relay-0', 'mailroute-relay-1'],
      relays: [
        { name: 'mailroute-relay-mailroute-relay-0', revision: 'r2' },
        { name: 'mailroute-relay-mailroute-relay-1', revision: OLD },
      ],
      generationIn: (rev) => ({ [OLD]: 1, r2: 2 })[rev],
    },
    { Programmed: 'False/Pending', Ready: 'False/Pending' },
    '1/2 relays programmed; serving an older revision: mailroute-relay-1 (8a6575315969)',
  ],
  [
    'without a StatefulSet the Lease name is shown as its pod too',
    {
      relays: [
        { name: 'mailroute-relay-relay-0', revision: 'r2' },
        { name: 'mailroute-relay-relay-1', revision: OLD },
      ],
    },
    { Programmed: 'False/Pending' },
    '1/2 relays programmed; serving an older revision: relay-1 (8a6575315969)',
  ],
  [
    'missing and lagging relays are both named, missing first',
    {
      expectedRelays: ['r-0', 'r-1', 'r-2'],
      relays: [
        { name: 'mailroute-relay-r-0', revision: 'r2' },
        { name: 'mailroute-relay-r-2', revision: 'r1' },
      ],
    },
    { Programmed: 'False/Pending' },
    '1/3 relays programmed; r-1 has not reported; serving an older revision: r-2 (r1)',
  ],
  [
    'many lagging relays: three are named, the rest counted',
    {
      expectedRelays: ['r-0', 'r-1', 'r-2', 'r-3', 'r-4', 'r-5'],
      relays: ['r-0', 'r-1', 'r-2', 'r-3', 'r-4', 'r-5'].map((p, i) => ({
        name: `mailroute-relay-${p}`,
        revision: i === 0 ? 'r2' : i === 1 ? undefined : OLD,
      })),
      generationIn: (rev) => ({ [OLD]: 1, r2: 2 })[rev],
    },
    { Programmed: 'False/Pending' },
    '1/6 relays programmed; serving an older revision: r-1 (no revision), r-2 (8a6575315969), r-3 (8a6575315969), and 2 more',
  ],
  [
    'exactly three lagging relays: all named, no count',
    {
      relays: [
        { name: 'a', revision: 'r1' },
        { name: 'b', revision: 'r1' },
        { name: 'c', revision: 'r1' },
      ],
    },
    { Programmed: 'False/Pending' },
    '0/3 relays programmed; serving an older revision: a (r1), b (r1), c (r1)',
  ],
  [
    'not compiled yet: every relay lacks the generation, so none is named as lagging',
    { compiledGeneration: 1, generation: 3 },
    { Programmed: 'Unknown/NotCompiled' },
    'generation 3 not compiled yet; 0/2 relays programmed',
  ],
  [
    'StatefulSet wants 5, none has reported: the first three are named',
    { expectedRelays: ['r-0', 'r-1', 'r-2', 'r-3', 'r-4'], relays: [] },
    { Programmed: 'False/Pending' },
    '0/5 relays programmed; r-0, r-1, r-2, 2 more have not reported',
  ],
  [
    'StatefulSet scaled to 0',
    { expectedRelays: [], relays: [] },
    { Programmed: 'False/NoRelays' },
    '0/0 relays programmed',
  ],
  [
    'conflict',
    { issues: [conflict], compiledGeneration: undefined },
    { Accepted: 'False/Conflict', Programmed: 'False/NotInRoutingTable', Ready: 'False/Conflict' },
    '',
  ],
  [
    'MailDomain that no accepted policy routes',
    { kind: 'MailDomain', noPolicyFor: 'example.com' },
    { Accepted: 'True', Programmed: 'False/NoPolicy', Ready: 'False/NoPolicy' },
    'no accepted DeliveryPolicy routes example.com: mail for it is deferred (451 4.3.5)',
  ],
  [
    'the routing table holding this generation could not be written: ApplyFailed names the API error',
    { applyFailure: 'routing table not written: 404 namespaces "mr-missing" not found' },
    { Accepted: 'True', ResolvedRefs: 'True', Programmed: 'False/ApplyFailed', Ready: 'False/ApplyFailed' },
    'routing table not written: 404 namespaces "mr-missing" not found',
  ],
  [
    'a failed write outranks the relay count (no relays yet) and NoPolicy: no relay can be given the table',
    {
      kind: 'MailDomain',
      relays: [],
      noPolicyFor: 'example.com',
      applyFailure: 'routing table not written: 403 configmaps "mailroute-routing" is forbidden',
    },
    { Programmed: 'False/ApplyFailed', Ready: 'False/ApplyFailed' },
    'routing table not written: 403 configmaps "mailroute-routing" is forbidden',
  ],
  [
    'a failed write is no news about an object that is not in the table (its own problem says why)',
    { issues: [conflict], compiledGeneration: undefined, applyFailure: 'routing table not written: 422 x' },
    { Accepted: 'False/Conflict', Programmed: 'False/NotInRoutingTable', Ready: 'False/Conflict' },
    'not in the routing table (see Accepted and ResolvedRefs)',
  ],
  [
    'a generation not compiled yet stays NotCompiled while writes fail',
    { compiledGeneration: 1, applyFailure: 'routing table not written: 422 x' },
    { Programmed: 'Unknown/NotCompiled' },
    '',
  ],
  [
    'not in the routing table: no relay count (relays on an older revision are no news about it)',
    { issues: [conflict], compiledGeneration: undefined },
    { Programmed: 'False/NotInRoutingTable' },
    'not in the routing table (see Accepted and ResolvedRefs)',
  ],
  [
    'dangling reference',
    { kind: 'TestRecipient', issues: [dangling], compiledGeneration: undefined },
    {
      Accepted: 'True',
      ResolvedRefs: 'False/PolicyNotFound',
      Ready: 'False/PolicyNotFound',
      Active: 'True/NoExpiry',
    },
    '',
  ],
  [
    'missing Secret',
    { kind: 'MailDomain', missingSecrets: ['ns/legacy-smtp'] },
    { ResolvedRefs: 'False/SecretNotFound', Ready: 'False/SecretNotFound' },
    '',
  ],
  [
    'Secret without username/password',
    { kind: 'MailDomain', invalidSecrets: ['ns/legacy-smtp: no key password'] },
    { ResolvedRefs: 'False/InvalidSecret', Ready: 'False/InvalidSecret' },
    '',
  ],
  [
    'generation not compiled yet',
    { compiledGeneration: 1 },
    { Programmed: 'Unknown/NotCompiled', Ready: 'False/NotCompiled' },
    '',
  ],
  [
    'before the first compile',
    { compiled: false, compiledGeneration: undefined },
    { Programmed: 'Unknown/NotCompiled' },
    '',
  ],
  [
    'expired TestRecipient',
    { kind: 'TestRecipient', expiresAt: '2026-11-28T11:59:59Z' },
    { Active: 'False/Expired', Ready: 'True/Ready' },
    '',
  ],
];

describe('decideStatus', () => {
  it.each(rows)('%s', (_name, patch, want, programmedMsg) => {
    const d = decideStatus({ ...base, ...patch });
    const got = Object.fromEntries(
      d.conditions.map((c) => [
        c.type,
        c.status === 'True' && want[c.type] === 'True' ? 'True' : `${c.status}/${c.reason}`,
      ]),
    );
    for (const [type, v] of Object.entries(want))
      expect(`${type}=${got[type] ?? 'absent'}`).toBe(`${type}=${v}`);
    if (programmedMsg !== '')
      expect(d.conditions.find((c) => c.type === 'Programmed')?.message).toBe(programmedMsg);
  });

  it('ApplyFailed: Ready says which condition and why; it is a Warning Event, also for a new object', () => {
    const d = decideStatus({
      ...base,
      applyFailure: 'routing table not written: 404 namespaces "x" not found',
    });
    const ready = d.conditions.find((c) => c.type === 'Ready');
    expect(ready).toMatchObject({
      status: 'False',
      reason: 'ApplyFailed',
      message: 'Programmed: routing table not written: 404 namespaces "x" not found',
    });
    const events = statusEvents([
      { type: 'Ready', from: undefined, to: 'False', reason: 'ApplyFailed', message: ready?.message ?? '' },
    ]);
    expect(events.map((e) => `${e.type} ${e.reason}`)).toEqual(['Warning ApplyFailed']);
  });

  it('a missing Secret and one that does not opt in get the same neutral message', () => {
    const d = decideStatus({ ...base, kind: 'MailDomain', missingSecrets: ['ns/db-password'] });
    expect(d.conditions.find((c) => c.type === 'ResolvedRefs')?.message).toBe(
      'spec.servers[].authSecretRef: Secret ns/db-password not found or not permitted (a Secret is used for SMTP AUTH only with the label mailroute.io/smtp-auth: "true")',
    );
  });

  it('requeues a TestRecipient at its expiresAt', () => {
    const d = decideStatus({ ...base, kind: 'TestRecipient', expiresAt: '2026-11-28T12:00:30Z' });
    expect(d.conditions.find((c) => c.type === 'Active')?.status).toBe('True');
    expect(d.requeueAfterMs).toBe(30_001);
  });

  it.each([
    ['the next stage end', ['2026-11-28T11:00:00Z', '2026-11-28T12:00:10Z', '2026-11-28T13:00:00Z'], 10_001],
    [
      'a stage ending now is in force already: the one after it',
      ['2026-11-28T12:00:00Z', '2026-11-28T12:01:00Z'],
      60_001,
    ],
    ['every stage has ended: no requeue', ['2026-11-28T11:00:00Z'], undefined],
  ])('requeues a DeliveryPolicy at %s (the same nextInstant as expiry)', (_what, transitions, want) => {
    expect(decideStatus({ ...base, transitions }).requeueAfterMs).toBe(want);
  });

  it('waits at most WALL_CLOCK_RECHECK_MS for an instant further ahead (a step of the wall clock forward flips it late by no more)', () => {
    const d = decideStatus({ ...base, kind: 'TestRecipient', expiresAt: '2026-11-29T12:00:00Z' });
    expect(d.requeueAfterMs).toBe(WALL_CLOCK_RECHECK_MS);
    expect(WALL_CLOCK_RECHECK_MS).toBe(300_000);
  });

  it('a TestRecipient at expiresAt exactly is expired, and not requeued', () => {
    const d = decideStatus({ ...base, kind: 'TestRecipient', expiresAt: '2026-11-28T12:00:00Z' });
    expect(d.conditions.find((c) => c.type === 'Active')?.status).toBe('False');
    expect(d.requeueAfterMs).toBeUndefined();
  });

  // The API server's format check let these through; Date.parse gives NaN, which read as "never" kept the recipient
  // "active until ..." forever. The compile leaves it out (InvalidTime); its status says why, and nothing is requeued.
  it.each(['2026-06-05T00:00:00,5Z', '2026-06-05T00:00:00+99:99'])(
    'a TestRecipient whose expiresAt cannot be read (%s) is not Active, and says so',
    (expiresAt) => {
      const invalid = {
        kind: 'TestRecipient' as const,
        namespace: 'ns',
        name: 't',
        condition: 'Accepted' as const,
        reason: 'InvalidTime',
        field: 'spec.expiresAt',
        message: `${JSON.stringify(expiresAt)} is not an RFC 3339 date-time`,
      };
      const d = decideStatus({
        ...base,
        kind: 'TestRecipient',
        expiresAt,
        issues: [invalid],
        compiledGeneration: undefined,
      });
      const active = d.conditions.find((c) => c.type === 'Active');
      expect(active).toMatchObject({ status: 'False', reason: 'InvalidTime' });
      expect(active?.message).toBe(
        `spec.expiresAt: ${JSON.stringify(expiresAt)} is not an RFC 3339 date-time; the recipient routes like any other until it is fixed`,
      );
      expect(d.conditions.find((c) => c.type === 'Ready')).toMatchObject({
        status: 'False',
        reason: 'InvalidTime',
      });
      expect(d.requeueAfterMs).toBeUndefined();
    },
  );

  it('has no Active condition on other kinds', () => {
    expect(decideStatus(base).conditions.map((c) => c.type)).toEqual([
      'Accepted',
      'ResolvedRefs',
      'Programmed',
      'Ready',
    ]);
  });

  it('MailDomain: BackscatterRisk is True for a domain without recipient checks, False otherwise; never part of Ready', () => {
    const risky = decideStatus({
      ...base,
      kind: 'MailDomain',
      backscatterRisk: 'accepts mail for any local part',
    });
    const c = risky.conditions.find((x) => x.type === 'BackscatterRisk');
    expect(c).toMatchObject({
      status: 'True',
      reason: 'NoRecipientCheck',
      message: 'accepts mail for any local part',
    });
    const ready = risky.conditions.find((x) => x.type === 'Ready');
    expect(ready?.status).toBe(
      decideStatus({ ...base, kind: 'MailDomain' }).conditions.find((x) => x.type === 'Ready')?.status,
    );
    const safe = decideStatus({ ...base, kind: 'MailDomain', backscatterRisk: '' });
    expect(safe.conditions.find((x) => x.type === 'BackscatterRisk')).toMatchObject({
      status: 'False',
      reason: 'RecipientsChecked',
    });
  });
});

describe('statusEvents', () => {
  type T = Parameters<typeof statusEvents>[0][number];
  const t = (type: string, from: string | undefined, to: string, reason: string, message = 'm'): T => ({
    type,
    from,
    to,
    reason,
    message,
  });
  it.each<[string, T[], string[]]>([
    [
      'a new object coming up: no event',
      [
        t('Accepted', undefined, 'True', 'Accepted'),
        t('ResolvedRefs', undefined, 'True', 'ResolvedRefs'),
        t('Programmed', undefined, 'False', 'Pending'),
        t('Ready', undefined, 'False', 'Pending'),
      ],
      [],
    ],
    [
      'its first Ready: one Normal event with the status message',
      [
        t('Programmed', 'False', 'True', 'Programmed', '2/2 relays programmed'),
        t('Ready', 'False', 'True', 'Ready', '2/2 relays programmed'),
      ],
      ['Normal Ready Ready=True: 2/2 relays programmed'],
    ],
    [
      'a new object Ready at once: one event',
      [
        t('Accepted', undefined, 'True', 'Accepted'),
        t('Ready', undefined, 'True', 'Ready', '1/1 relays programmed'),
      ],
      ['Normal Ready Ready=True: 1/1 relays programmed'],
    ],
    [
      'a new object with a problem: one Warning',
      [
        t('Accepted', undefined, 'False', 'Conflict'),
        t('Ready', undefined, 'False', 'Conflict', 'Accepted: x'),
      ],
      ['Warning Conflict Ready=False: Accepted: x'],
    ],
    [
      'a change rolling out (Ready True -> False Pending): Normal',
      [t('Ready', 'True', 'False', 'Pending', 'Programmed: 1/2 relays programmed')],
      ['Normal Pending Ready=False: Programmed: 1/2 relays programmed'],
    ],
    [
      'a problem on a Ready object: Warning',
      [
        t('ResolvedRefs', 'True', 'False', 'SecretNotFound'),
        t('Ready', 'True', 'False', 'SecretNotFound', 'r'),
      ],
      ['Warning SecretNotFound Ready=False: r'],
    ],
    [
      'expiry',
      [t('Active', 'True', 'False', 'Expired', 'expired at x')],
      ['Normal Expired Active=False: expired at x'],
    ],
  ])('%s', (_name, transitions, want) => {
    expect(statusEvents(transitions).map((e) => `${e.type} ${e.reason} ${e.message}`)).toEqual(want);
  });
});
