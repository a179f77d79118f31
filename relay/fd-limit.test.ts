import { describe, expect, it } from 'vitest';
import {
  DESCRIPTOR_HEADROOM,
  descriptorAdvice,
  parseOpenFilesLimit,
  readOpenFilesLimit,
} from './fd-limit.ts';

const limits = (soft: string, hard: string): string =>
  [
    'Limit                     Soft Limit           Hard Limit           Units     ',
    'Max cpu time              unlimited            unlimited            seconds   ',
    `Max open files            ${soft.padEnd(21)}${hard.padEnd(21)}files     `,
    'Max locked memory         8388608              8388608              bytes     ',
  ].join('\n');

describe('parseOpenFilesLimit', () => {
  it.each([
    ['1024', '524288', { soft: 1024, hard: 524288 }],
    ['1048576', '1048576', { soft: 1048576, hard: 1048576 }],
    ['unlimited', 'unlimited', { soft: Infinity, hard: Infinity }],
  ])('soft %s, hard %s', (soft, hard, want) => {
    expect(parseOpenFilesLimit(limits(soft, hard))).toEqual(want);
  });

  it('no such line (not Linux, or a changed format): undefined', () => {
    expect(parseOpenFilesLimit('Max processes 100 100 processes')).toBeUndefined();
    expect(parseOpenFilesLimit('')).toBeUndefined();
  });

  it('reads this process’s own limit on Linux', async () => {
    const l = await readOpenFilesLimit();
    expect(l?.soft).toBeGreaterThan(0);
    expect(l!.hard).toBeGreaterThanOrEqual(l!.soft);
  });
});

describe('descriptorAdvice', () => {
  it.each([
    [
      'room for every session and the headroom',
      { soft: 1000 + DESCRIPTOR_HEADROOM, hard: 1000 + DESCRIPTOR_HEADROOM },
      1000,
      undefined,
    ],
    ['unlimited', { soft: Infinity, hard: Infinity }, 100_000, undefined],
    [
      'a limit of 1,024 with the default 1,000 sessions',
      { soft: 1024, hard: 1024 },
      1000,
      "the open files limit (1024) is below the SMTP sessions this process admits (1000, --max-connections) plus 256 for the relay's own files and connections: under a flood the relay runs out of descriptors before its table is full; raise the hard limit to at least 1256 (LimitNOFILE= in a systemd unit, ulimit -Hn, the container runtime's ulimits) or lower --max-connections",
    ],
  ])('%s', (_what, limit, maxConnections, want) => {
    expect(descriptorAdvice(limit, maxConnections)).toBe(want);
  });
});
