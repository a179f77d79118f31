import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { atDomain, floorLegs, floorPlan, fromWire, toWire } from './floor-plan.ts';
import { parseManifestText } from '../../routing/parse.ts';
import type { MailrouteObject } from '../../routing/types.ts';
import { mailrouteManifests } from './mailroute.ts';
import { BENCH_DOMAIN, COPY_DOMAIN } from './workloads.ts';

const text = (mode: 'Direct' | 'Dual' | 'Split', recipients = 2): string =>
  mailrouteManifests({ root: '/unused', sinkA: 2601, sinkB: 2602, mode, recipients });
/** The objects the project's manifest loader makes of a text (throws on a load error: these texts are valid). */
const load = (yaml: string): MailrouteObject[] => {
  const parsed = parseManifestText(yaml, 'bench.yaml');
  expect(parsed.errors).toEqual([]);
  return parsed.objects;
};
const manifests = (mode: 'Direct' | 'Dual' | 'Split', recipients = 2): MailrouteObject[] =>
  load(text(mode, recipients));

describe('floorPlan: the benchmark manifests', () => {
  it.each([
    ['Direct', 2601, undefined, undefined],
    ['Dual', 2601, 2602, COPY_DOMAIN],
    ['Split', 2601, 2602, undefined],
  ] as const)('%s', (mode, primary, secondary, copy) => {
    const plan = floorPlan(manifests(mode));
    expect(plan).toMatchObject({ mode, primaryPort: primary, secondaryPort: secondary, copyDomain: copy });
    if (mode === 'Split') expect(plan.knownOnPrimary.size).toBe(2);
  });

  it.each([
    [() => [], 'one MailDomain and one DeliveryPolicy'],
    [
      () => manifests('Dual').filter((o) => o.kind !== 'DeliveryPolicy'),
      'one MailDomain and one DeliveryPolicy',
    ],
    [() => load(text('Dual').replace('secondary: b', 'secondary: c')), 'DeliveryPolicy.spec.secondary "c"'],
    [() => load(text('Direct').replace('primary: a', 'primary: z')), 'DeliveryPolicy.spec.primary "z"'],
  ])('refuses what it cannot route, naming the field (%#)', (objects, message) => {
    expect(() => floorPlan(objects())).toThrow(message);
  });
});

describe('floorLegs', () => {
  const dual = floorPlan(manifests('Dual'));
  const split = floorPlan(manifests('Split', 2));
  const [known] = [...split.knownOnPrimary];
  it.each([
    ['Direct', floorPlan(manifests('Direct')), ['u@x'], [{ port: 2601, rcpts: ['u@x'] }]],
    [
      'Dual: the copy at the copy domain',
      dual,
      [`u@${BENCH_DOMAIN}`, 'v@other'],
      [
        { port: 2601, rcpts: [`u@${BENCH_DOMAIN}`, 'v@other'] },
        { port: 2602, rcpts: [`u@${COPY_DOMAIN}`, `v@${COPY_DOMAIN}`] },
      ],
    ],
    [
      'Split: known to the primary, the rest to the secondary',
      split,
      [known ?? '', `nobody@${BENCH_DOMAIN}`],
      [
        { port: 2601, rcpts: [known] },
        { port: 2602, rcpts: [`nobody@${BENCH_DOMAIN}`] },
      ],
    ],
    ['Split: only unknown', split, ['n@x'], [{ port: 2602, rcpts: ['n@x'] }]],
  ])('%s', (_name, plan, rcpts, legs) => {
    expect(floorLegs(plan, rcpts)).toEqual(legs);
  });

  it('atDomain keeps the local part, even one with an @ in quotes', () => {
    expect(atDomain('"a@b"@x.example', 'y.example')).toBe('"a@b"@y.example');
  });
});

describe('toWire / fromWire', () => {
  it.each([
    ['', '.\r\n'],
    ['a\r\n', 'a\r\n.\r\n'],
    ['a', 'a\r\n.\r\n'],
    ['.a\r\n.\r\n..\r\n', '..a\r\n..\r\n...\r\n.\r\n'],
  ])('%j', (message, wire) => {
    expect(toWire(Buffer.from(message, 'latin1')).toString('latin1')).toBe(wire);
  });

  it('fromWire undoes toWire for any message that ends with CRLF', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('.', 'a', '\r\n', '\r', '\n', '\x00', '\xff', '..'), { maxLength: 60 }),
        (parts) => {
          const message = Buffer.from(`${parts.join('')}\r\n`, 'latin1');
          const wire = toWire(message);
          expect(wire.toString('latin1')).not.toMatch(/\r\n\.\r\n(?!$)/); // no early end of DATA
          expect(fromWire(wire).equals(message)).toBe(true);
        },
      ),
    );
  });
});
