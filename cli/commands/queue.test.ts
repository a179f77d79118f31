import { describe, expect, it } from 'vitest';
import { formatAge, renderList } from './queue.ts';

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
