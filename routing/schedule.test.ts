// Dated stages of a DeliveryPolicy: the pure schedule (which stage is in force, the next transition),
// their validation (each error names its field), compile() and resolve() by the clock.
import { describe, expect, it } from 'vitest';
import { compile } from './compile.ts';
import { buildIndex, resolve } from './resolve.ts';
import { DATE_TIME } from './crd-schema.ts';
import {
  FINAL_STAGE,
  instant,
  nextInstant,
  nextTransition,
  parseInstant,
  stageAt,
  stageIndexAt,
} from './schedule.ts';
import { exampleDomain, examplePolicy, testRecipient } from './test-fixtures.ts';
import { validateObject } from './validate.ts';

const SAT = '2026-12-05T02:00:00Z'; // Saturday 02:00 UTC
const TWO_WEEKS = '2026-12-19T02:00:00Z';
const ms = (t: string) => Date.parse(t);

describe('stageIndexAt / stageAt: the stage in force', () => {
  const untils = [ms(SAT), ms(TWO_WEEKS)];
  it.each([
    ['long before the first end', '1970-01-01T00:00:00Z', 0],
    ['1 ms before the first end', '2026-12-05T01:59:59.999Z', 0],
    ['at the first end exactly: the next stage', SAT, 1],
    ['1 ms after the first end', '2026-12-05T02:00:00.001Z', 1],
    ['1 ms before the last end', '2026-12-19T01:59:59.999Z', 1],
    ['at the last end exactly: the final state', TWO_WEEKS, 2],
    ['years later', '2040-01-01T00:00:00Z', 2],
  ])('%s (%s) -> %d', (_what, now, want) => {
    expect(stageIndexAt(untils, ms(now))).toBe(want);
  });

  it('no stages: always the final state', () => {
    expect(stageIndexAt([], 0)).toBe(0);
    expect(stageAt(undefined, new Date(0))).toEqual({ index: 0, name: FINAL_STAGE });
  });

  it('names the stage and its end', () => {
    const stages = [
      { name: 'dual', until: SAT },
      { name: 'reverse-copy', until: TWO_WEEKS },
    ];
    expect(stageAt(stages, new Date(ms(SAT) - 1))).toEqual({ index: 0, name: 'dual', until: SAT });
    expect(stageAt(stages, new Date(SAT))).toEqual({ index: 1, name: 'reverse-copy', until: TWO_WEEKS });
    expect(stageAt(stages, new Date(TWO_WEEKS))).toEqual({ index: 2, name: FINAL_STAGE });
  });

  it('UTC instants: the same instant written with an offset, across a DST change, gives the same stage', () => {
    // 2026-03-29 01:00 UTC is when Central European time jumps from +01:00 to +02:00.
    const dst = [{ name: 'before', until: '2026-03-29T03:00:00+02:00' }]; // = 01:00Z
    expect(instant(dst[0]!.until)).toBe(ms('2026-03-29T01:00:00Z'));
    expect(stageAt(dst, new Date('2026-03-29T01:59:59+01:00')).name).toBe('before'); // = 00:59:59Z
    expect(stageAt(dst, new Date('2026-03-29T03:00:00+02:00')).name).toBe(FINAL_STAGE); // = 01:00:00Z
    expect(stageAt(dst, new Date('2026-03-29T00:59:59Z')).name).toBe('before');
    expect(stageAt(dst, new Date('2026-03-29T01:00:00Z')).name).toBe(FINAL_STAGE);
  });

  it('a clock that jumps forward or back gets the stage of the instant it now reads, with no memory of the past', () => {
    const stages = [
      { name: 'a', until: SAT },
      { name: 'b', until: TWO_WEEKS },
    ];
    const seen = [
      '2026-12-01T00:00:00Z',
      '2027-01-01T00:00:00Z',
      '2026-12-10T00:00:00Z',
      '2026-12-01T00:00:00Z',
    ].map((t) => stageAt(stages, new Date(t)).name);
    expect(seen).toEqual(['a', FINAL_STAGE, 'b', 'a']);
  });

  // The compiler refuses such a stage (InvalidTime); a table written some other way may still carry one.
  it.each(['not a date', '2026-06-05T00:00:00,5Z', '2026-06-05T00:00:00+99:99', '2026-02-30T00:00:00Z'])(
    'an unparsable until (%s) has ended, never "never"',
    (until) => {
      expect(instant(until)).toBe(Number.NEGATIVE_INFINITY);
      const stages = [
        { name: 'x', until },
        { name: 'y', until: TWO_WEEKS },
      ];
      expect(stageAt(stages, new Date(0)).name).toBe('y');
      expect(stageAt(stages, new Date(TWO_WEEKS)).name).toBe(FINAL_STAGE);
    },
  );

  it('no time at all is never (a TestRecipient without expiresAt)', () => {
    expect(instant(undefined)).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('parseInstant: the one definition of a time (the CRD pattern DATE_TIME, check, compile, schedule)', () => {
  it.each([
    ['2026-12-05T02:00:00Z', '2026-12-05T02:00:00.000Z'],
    ['2026-12-05T03:00:00+01:00', '2026-12-05T02:00:00.000Z'],
    ['2026-12-05T02:00:00-00:00', '2026-12-05T02:00:00.000Z'],
    ['2026-12-05T02:00:00.5Z', '2026-12-05T02:00:00.500Z'],
    ['2026-12-05T02:00:00.123456789Z', '2026-12-05T02:00:00.123Z'],
    ['2026-12-05t02:00:00z', '2026-12-05T02:00:00.000Z'], // RFC 3339 allows lower case
    ['2026-12-31T23:59:59+23:59', '2026-12-31T00:00:59.000Z'],
    ['2024-02-29T00:00:00Z', '2024-02-29T00:00:00.000Z'], // a leap year
    ['2000-02-29T00:00:00Z', '2000-02-29T00:00:00.000Z'], // divisible by 400
  ])('%s is %s', (text, iso) => {
    expect(new Date(parseInstant(text)!).toISOString()).toBe(iso);
    expect(new RegExp(DATE_TIME).test(text)).toBe(true);
  });

  it.each([
    ['a comma before the fraction (the API server let it through)', '2026-06-05T00:00:00,5Z'],
    ['an offset of 99:99 (the API server let it through)', '2026-06-05T00:00:00+99:99'],
    ['an offset of 24 hours', '2026-06-05T00:00:00+24:00'],
    ['an offset without a colon', '2026-06-05T00:00:00+0100'],
    ['no zone', '2026-06-05T00:00:00'],
    ['a space for T', '2026-06-05 00:00:00Z'],
    ['no seconds', '2026-06-05T00:00Z'],
    ['a dot without digits', '2026-06-05T00:00:00.Z'],
    ['February 30 (Date.parse makes it March 2)', '2026-02-30T00:00:00Z'],
    ['February 29 of a common year', '2026-02-29T00:00:00Z'],
    ['February 29 of 1900 (divisible by 100, not 400)', '1900-02-29T00:00:00Z'],
    ['April 31', '2026-04-31T00:00:00Z'],
    ['month 13', '2026-13-01T00:00:00Z'],
    ['day 00', '2026-06-00T00:00:00Z'],
    ['24:00 (Date.parse makes it the next day)', '2026-06-05T24:00:00Z'],
    ['a leap second (the API server refuses it too)', '2026-06-30T23:59:60Z'],
    ['a date alone', '2026-06-05'],
    ['text', 'tomorrow'],
    ['a five-digit year', '12026-06-05T00:00:00Z'],
  ])('refuses %s: %s', (_what, text) => {
    expect(parseInstant(text)).toBeUndefined();
    expect(new RegExp(DATE_TIME).test(text)).toBe(false);
  });

  it('every text the pattern accepts is an instant Date.parse reads (a sample of every month and day)', () => {
    for (let y = 1896; y <= 2404; y += 4 * 27 + 1) {
      for (let m = 1; m <= 12; m++) {
        for (let d = 1; d <= 31; d++) {
          const text = `${String(y).padStart(4, '0')}-${String(m).padStart(2, '0')}-${String(d).padStart(2, '0')}T12:00:00Z`;
          const real = new Date(Date.UTC(y, m - 1, d)).getUTCDate() === d;
          expect(parseInstant(text) !== undefined, text).toBe(real);
        }
      }
    }
  });
});

describe('nextInstant / nextTransition: one computation for stage ends and TestRecipient expiry', () => {
  it.each([
    ['the earliest future time', [TWO_WEEKS, SAT], '2026-12-01T00:00:00Z', SAT],
    ['a time equal to now is not next (it is in force)', [SAT, TWO_WEEKS], SAT, TWO_WEEKS],
    ['nothing after now', [SAT], TWO_WEEKS, undefined],
    ['undefined and unparsable times are skipped', [undefined, 'x', SAT], '2026-12-01T00:00:00Z', SAT],
  ] as const)('%s', (_what, times, now, want) => {
    expect(nextInstant(times, new Date(now))?.toISOString()).toBe(
      want === undefined ? undefined : new Date(want).toISOString(),
    );
  });

  it('a table: the earliest stage end or TestRecipient expiry after now', () => {
    const { table } = compile([
      exampleDomain(),
      examplePolicy({
        mode: 'Direct',
        stages: [{ name: 'trial', until: TWO_WEEKS, mode: 'Dual', primary: 'old', secondary: 'new' }],
      }),
      testRecipient('alice', {
        policyRef: { name: 'example-com' },
        address: 'alice@example.com',
        expiresAt: SAT,
      }),
    ]);
    expect(nextTransition(table, new Date('2026-12-01T00:00:00Z'))?.toISOString()).toBe(
      new Date(SAT).toISOString(),
    );
    expect(nextTransition(table, new Date(SAT))?.toISOString()).toBe(new Date(TWO_WEEKS).toISOString());
    expect(nextTransition(table, new Date(TWO_WEEKS))).toBeUndefined();
  });
});

const policyDoc = (spec: Record<string, unknown>) => ({
  apiVersion: 'mailroute.io/v1alpha1',
  kind: 'DeliveryPolicy',
  metadata: { name: 'p' },
  spec: { domainRef: { name: 'example-com' }, mode: 'Direct', primary: 'new', ...spec },
});
const stage = (name: string, until: string, extra: Record<string, unknown> = {}) => ({
  name,
  until,
  mode: 'Dual',
  primary: 'old',
  secondary: 'new',
  ...extra,
});

describe('validation of stages names the field', () => {
  it.each([
    [
      'unordered dates',
      [stage('a', TWO_WEEKS), stage('b', SAT)],
      'spec.stages[1].until',
      /must be after spec\.stages\[0\]\.until \(2026-12-19T02:00:00Z\)/,
    ],
    [
      'two stages ending at the same instant (overlapping), even written differently',
      [stage('a', SAT), stage('b', '2026-12-05T03:00:00+01:00')],
      'spec.stages[1].until',
      /cannot end at the same instant/,
    ],
    [
      'a stage that changes the domain',
      [{ ...stage('a', SAT), domainRef: { name: 'other-com' } }],
      'spec.stages[0].domainRef',
      /a stage cannot change the domain/,
    ],
    ['duplicate names', [stage('a', SAT), stage('a', TWO_WEEKS)], 'spec.stages', /unique/],
    ['a stage named final', [stage('final', SAT)], 'spec.stages[0].name', /final is the name/],
    [
      'Dual without a secondary',
      [stage('a', SAT, { secondary: undefined })],
      'spec.stages[0].secondary',
      /required/,
    ],
    [
      'secondary equal to primary',
      [stage('a', SAT, { secondary: 'old' })],
      'spec.stages[0].secondary',
      /differ/,
    ],
    ['no until', [{ ...stage('a', SAT), until: undefined }], 'spec.stages[0].until', /required/],
    ['until not RFC 3339', [stage('a', 'Saturday 2am')], 'spec.stages[0].until', /RFC 3339/],
    [
      'an unknown mode',
      [stage('a', SAT, { mode: 'Copy' })],
      'spec.stages[0].mode',
      /one of Direct, Dual, Split/,
    ],
    [
      'more than 8 stages',
      Array.from({ length: 9 }, (_, i) => stage(`s${i}`, `2027-01-0${i + 1}T00:00:00Z`)),
      'spec.stages',
      /8/,
    ],
  ])('%s', (_what, stages, path, message) => {
    const r = validateObject(policyDoc({ stages: JSON.parse(JSON.stringify(stages)) as unknown }));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.errors.map((e) => e.path)).toContain(path);
    expect(r.errors.find((e) => e.path === path)?.message).toMatch(message);
  });

  it('accepts ordered stages (offsets allowed) and applies defaults inside each stage', () => {
    const r = validateObject(
      policyDoc({ stages: [stage('a', SAT), stage('b', '2026-12-19T03:00:00+01:00', { mode: 'Split' })] }),
    );
    expect(r.ok ? [] : r.errors).toEqual([]);
  });
});

describe('compile and resolve with stages', () => {
  // Dual to new with copies until Saturday 02:00, then Direct to new with a copy to old for two weeks, then Direct.
  const objects = [
    exampleDomain(),
    examplePolicy({
      mode: 'Direct',
      primary: 'new',
      stages: [
        {
          name: 'dual',
          until: SAT,
          mode: 'Dual',
          primary: 'old',
          secondary: 'new',
          dual: { copyRecipientDomain: 'new.example' },
        },
        { name: 'reverse', until: TWO_WEEKS, mode: 'Dual', primary: 'new', secondary: 'old' },
      ],
    }),
    testRecipient('carol', { policyRef: { name: 'example-com' }, address: 'carol@example.com' }),
  ];
  const result = compile(objects);
  const index = buildIndex(result.table);
  const legs = (to: string, at: string) =>
    resolve(index, to, { now: new Date(at) }).legs.map((l) => `${l.role}:${l.server.name}:${l.recipient}`);

  it('compiles the stages into the domain route, the policy fields as the final state', () => {
    expect(result.issues).toEqual([]);
    const route = result.table.domains['example.com']!;
    expect(route.mode).toBe('Direct');
    expect(route.primary).toBe('new');
    expect(route.stages).toEqual([
      {
        dual: { bounces: 'Suppress', copyRecipientDomain: 'new.example', scope: 'All' },
        mode: 'Dual',
        name: 'dual',
        primary: 'old',
        secondary: 'new',
        until: SAT,
      },
      {
        dual: { bounces: 'Suppress', scope: 'All' },
        mode: 'Dual',
        name: 'reverse',
        primary: 'new',
        secondary: 'old',
        until: TWO_WEEKS,
      },
    ]);
    expect(route.testRecipients['carol@example.com']?.forwardToDefaulted).toBe(true);
  });

  it.each([
    ['2026-12-05T01:59:59.999Z', ['primary:old:bob@example.com', 'copy:new:bob@new.example']],
    [SAT, ['primary:new:bob@example.com', 'copy:old:bob@example.com']],
    ['2026-12-19T01:59:59.999Z', ['primary:new:bob@example.com', 'copy:old:bob@example.com']],
    [TWO_WEEKS, ['primary:new:bob@example.com']],
  ])('at %s bob gets %j', (at, want) => {
    expect(legs('bob@example.com', at)).toEqual(want);
  });

  it('a TestRecipient without forwardTo gets the copy at the copyRecipientDomain of the stage in force', () => {
    expect(legs('carol@example.com', '2026-12-01T00:00:00Z')).toEqual([
      'primary:old:carol@example.com',
      'copy:new:carol@new.example',
    ]);
    expect(legs('carol@example.com', SAT)).toEqual([
      'primary:new:carol@example.com',
      'copy:old:carol@example.com',
    ]);
  });

  it('a policy without stages compiles exactly as before (no stages key, no forwardToDefaulted)', () => {
    const plain = compile([
      exampleDomain(),
      examplePolicy({ mode: 'Dual', secondary: 'new' }),
      testRecipient('carol', { policyRef: { name: 'example-com' }, address: 'carol@example.com' }),
    ]);
    expect(plain.json).not.toContain('stages');
    expect(plain.json).not.toContain('forwardToDefaulted');
  });

  it.each([
    [{ primary: 'gone' }, 'spec.stages[0].primary', 'UnknownServer'],
    [{ secondary: 'gone' }, 'spec.stages[0].secondary', 'UnknownServer'],
    [{ mode: 'Split' }, 'spec.stages[0].mode', 'NoAccountSource'],
    [{ dual: { scope: 'Accounts' } }, 'spec.stages[0].dual.scope', 'NoAccountSource'],
  ])('a stage naming %j is refused with an issue on its field', (extra, field, reason) => {
    const r = compile([
      exampleDomain(),
      examplePolicy({ mode: 'Direct', stages: [{ ...stage('a', SAT), ...extra }] }),
    ]);
    expect(r.issues.map((i) => [i.field, i.reason])).toEqual([[field, reason]]);
    expect(r.table.domains['example.com']?.policy).toBeUndefined();
  });
});

describe('a table not written by the compiler that carries a time that cannot be read', () => {
  // compile() refuses such objects (InvalidTime); a routing file written by hand, or a table compiled by an older
  // operator, may still carry one. It counts as passed, never as "never".
  const base = compile([
    exampleDomain(),
    examplePolicy({
      mode: 'Direct',
      primary: 'new',
      stages: [{ name: 'dual', until: TWO_WEEKS, mode: 'Dual', primary: 'old', secondary: 'new' }],
    }),
    testRecipient('alice', {
      policyRef: { name: 'example-com' },
      address: 'alice@example.com',
      keepPrimaryCopy: false,
      expiresAt: TWO_WEEKS,
    }),
  ]).table;
  const withTimes = (until: string, expiresAt: string) => {
    const table = structuredClone(base);
    const route = table.domains['example.com']!;
    route.stages![0]!.until = until;
    route.testRecipients['alice@example.com']!.expiresAt = expiresAt;
    return table;
  };
  const legs = (table: typeof base, to: string) =>
    resolve(buildIndex(table), to, { now: new Date(SAT) }).legs.map((l) => `${l.role}:${l.server.name}`);

  it('as written: the stage and the TestRecipient are in force before TWO_WEEKS', () => {
    expect(legs(base, 'bob@example.com')).toEqual(['primary:old', 'copy:new']);
    expect(legs(base, 'alice@example.com')).toEqual(['primary:new']);
  });

  it.each(['2026-12-19T02:00:00,5Z', '2026-12-19T02:00:00+99:99'])(
    'a stage until %s: the stage has ended (the final state routes); no transition is armed on it',
    (bad) => {
      const table = withTimes(bad, TWO_WEEKS);
      expect(legs(table, 'bob@example.com')).toEqual(['primary:new']);
      expect(nextTransition(table, new Date(SAT))?.toISOString()).toBe(new Date(TWO_WEEKS).toISOString());
    },
  );

  it.each(['2026-12-19T02:00:00,5Z', '2026-12-19T02:00:00+99:99'])(
    'a TestRecipient expiresAt %s: expired, alice routes like everyone else; no transition is armed on it',
    (bad) => {
      const table = withTimes(TWO_WEEKS, bad);
      expect(legs(table, 'alice@example.com')).toEqual(['primary:old', 'copy:new']);
      expect(legs(table, 'alice@example.com')).toEqual(legs(table, 'bob@example.com'));
      expect(nextTransition(withTimes(bad, bad), new Date(SAT))).toBeUndefined();
    },
  );
});
