// Dated stages of a DeliveryPolicy: the pure schedule (which stage is in force, the next transition),
// their validation (each error names its field), compile() and resolve() by the clock.
import { describe, expect, it } from 'vitest';
import { compile } from './compile.ts';
import { buildIndex, resolve } from './resolve.ts';
import { FINAL_STAGE, instant, nextInstant, nextTransition, stageAt, stageIndexAt } from './schedule.ts';
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

  it('an unparsable until never ends (validation refuses it before it gets here)', () => {
    expect(instant('not a date')).toBe(Number.POSITIVE_INFINITY);
    expect(stageAt([{ name: 'x', until: 'not a date' }], new Date(8.64e15)).name).toBe('x');
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
