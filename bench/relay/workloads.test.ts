import { describe, expect, it } from 'vitest';
import { expectedLegs, sourcePlans, sourceRecipients, WORKLOADS } from './workloads.ts';

describe('sourcePlans', () => {
  it.each([
    ['Direct', 20, 20_000, [{ sessions: 20, messages: 20_000, to: 'user@bench.example' }]],
    ['Dual', 20, 2_000, [{ sessions: 20, messages: 2_000, to: 'user@bench.example' }]],
    [
      'Split',
      20,
      20_000,
      [
        { sessions: 10, messages: 10_000, to: 'known@bench.example' },
        { sessions: 10, messages: 10_000, to: 'other@bench.example' },
      ],
    ],
    [
      'Split',
      3,
      1_001,
      [
        { sessions: 2, messages: 501, to: 'known@bench.example' },
        { sessions: 1, messages: 500, to: 'other@bench.example' },
      ],
    ],
  ] as const)('%s with %i sessions and %i messages', (mode, sessions, messages, plans) => {
    expect(sourcePlans(mode, sessions, messages)).toEqual(plans);
  });
});

describe('sourceRecipients', () => {
  it('names recipients like smtp-source -r: LOCAL, 2LOCAL ... NLOCAL', () => {
    expect(sourceRecipients('known@bench.example', 3)).toEqual([
      'known@bench.example',
      '2known@bench.example',
      '3known@bench.example',
    ]);
  });
});

describe('expectedLegs', () => {
  it.each([
    ['Ceiling', 100, 1, 100],
    ['Direct', 100, 10, 1_000],
    ['Split', 100, 1, 100],
    ['Dual', 100, 1, 200],
    ['Dual', 5_000, 10, 100_000],
  ] as const)('%s, %i messages x %i rcpts -> %i legs', (mode, m, r, legs) => {
    expect(expectedLegs(mode, m, r)).toBe(legs);
  });
});

describe('WORKLOADS', () => {
  it('has unique ids and the issue-6 load (4 KiB x 20,000 messages) in full mode', () => {
    expect(new Set(WORKLOADS.map((w) => w.id)).size).toBe(WORKLOADS.length);
    const dual = WORKLOADS.find((w) => w.id === 'dual-4k');
    expect(dual).toMatchObject({ mode: 'Dual', sizeBytes: 4096, recipients: 1, fullMessages: 20_000 });
  });
});
