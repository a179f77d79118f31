import { describe, expect, it } from 'vitest';
import type { LegView, QueueListView } from '../../relay/admin/view.ts';
import { legsNotRetried } from './support.ts';

const CUT = Date.parse('2026-12-03T10:00:00.000Z');
const RESTART = CUT + 2_000;
const iso = (t: number): string => new Date(t).toISOString();

function view(receivedAt: number, leg: Partial<LegView>): QueueListView {
  const l: LegView = {
    role: 'primary',
    server: 'old',
    address: '127.0.0.1:25',
    recipient: 'u@power.test',
    state: 'pending',
    attempts: 0,
    ...leg,
  };
  return {
    total: 1,
    truncated: false,
    skipped: 0,
    messages: [
      {
        id: '0mx7kz97qrmifu91',
        receivedAt: iso(receivedAt),
        mailFrom: 's@origin.test',
        size: 10,
        state: l.state === 'pending' ? 'pending' : 'deferred',
        recipients: [{ recipient: 'u@power.test', summary: '', legs: [l] }],
      },
    ],
  };
}

describe('legsNotRetried', () => {
  it.each<[string, QueueListView, boolean]>([
    ['never tried, received before the restart', view(CUT - 50, {}), true],
    [
      'tried before the cut, retry due before it (may have been in flight)',
      view(CUT - 5_000, {
        state: 'deferred',
        lastAttemptAt: iso(CUT - 1_100),
        nextAttemptAt: iso(CUT - 100),
      }),
      true,
    ],
    [
      'tried since the restart',
      view(CUT - 5_000, {
        state: 'deferred',
        lastAttemptAt: iso(RESTART + 10),
        nextAttemptAt: iso(RESTART + 1_010),
      }),
      false,
    ],
    [
      'waiting for a retry due after the cut (not in flight at it)',
      view(CUT - 5_000, { state: 'deferred', lastAttemptAt: iso(CUT - 500), nextAttemptAt: iso(CUT + 500) }),
      false,
    ],
    ['received after the restart', view(RESTART + 5, {}), false],
    ['delivered (final)', view(CUT - 50, { state: 'delivered', lastAttemptAt: iso(CUT - 40) }), false],
  ])('%s', (_, v, listed) => {
    expect(legsNotRetried(v, RESTART, CUT)).toEqual(listed ? ['0mx7kz97qrmifu91/u@power.test/primary'] : []);
  });
});
