import { describe, expect, it } from 'vitest';
import { formatAge, renderList, renderMessage } from './queue.ts';

describe('formatAge', () => {
  it.each([
    [0, '0s'],
    [59_999, '59s'],
    [65_000, '1m05s'],
    [3_720_000, '1h02m'],
    [3 * 86_400_000 + 3_600_000, '3d01h'],
    [-5000, '0s'],
  ])('%i ms -> %s', (ms, want) => {
    expect(formatAge(ms)).toBe(want);
  });
});

describe('renderList', () => {
  it('says when the queue is empty', () => {
    expect(renderList({ total: 0, truncated: false, messages: [], skipped: 0 }, new Date())).toBe(
      'queue is empty\n',
    );
  });
  it('shows the null sender as <> and notes truncation', () => {
    const out = renderList(
      {
        total: 5,
        truncated: true,
        skipped: 0,
        messages: [
          {
            id: '0000000000000abc',
            receivedAt: '2026-01-01T00:00:00Z',
            mailFrom: '',
            size: 1,
            state: 'pending',
            recipients: [{ recipient: 'a@x', summary: 'primary pending', legs: [] }],
          },
        ],
      },
      new Date('2026-01-01T00:01:00Z'),
    );
    expect(out).toContain('0000000000000abc 1m00s   <>   a@x       primary pending');
    expect(out).toContain('5 messages (1 pending, 0 deferred, 4 more not listed)');
  });
});

describe('renderMessage', () => {
  it('says when softBounce alone keeps a leg queued', () => {
    const leg = {
      role: 'primary' as const,
      server: 'zoho',
      address: '10.0.0.2:25',
      recipient: 'bob@x',
      state: 'deferred' as const,
      attempts: 3,
      lastReply: '550 5.1.1 no such user',
    };
    const m = (softBounced: boolean) =>
      renderMessage(
        {
          id: '0000000000000abc',
          receivedAt: '2026-01-01T00:00:00Z',
          mailFrom: 'a@s',
          size: 1,
          state: 'deferred',
          recipients: [
            {
              recipient: 'bob@x',
              summary: 'primary deferred',
              legs: [{ ...leg, ...(softBounced ? { softBounced } : {}) }],
            },
          ],
        },
        new Date('2026-01-01T00:01:00Z'),
      );
    expect(m(true)).toContain('SOFT BOUNCE: the server refused it for good; softBounce keeps it queued');
    expect(m(false)).not.toContain('SOFT BOUNCE');
  });
});
