import { describe, expect, it } from 'vitest';
import { formatWindow, renderMarkdown, renderText } from './diff-report.ts';
import { DIFF_FORMAT, type DomainDiff, type RoutingDiff } from '../routing/diff.ts';

const tr = (i: number) => ({
  address: `u${i}@example.com`,
  source: `mail/u${i}`,
  forwardTo: `u${i}@z.example`,
  keepPrimaryCopy: true,
  expiresAt: null,
});

function diff(domain: Partial<DomainDiff>): RoutingDiff {
  return {
    format: DIFF_FORMAT,
    at: '2026-06-01T00:00:00.000Z',
    expiringWithinSeconds: 7 * 86400,
    changed: true,
    unchangedDomains: 3,
    recipients: [],
    domains: [
      {
        domain: 'example.com',
        change: 'changed',
        fields: [],
        servers: [],
        accounts: [],
        testRecipients: { added: [], removed: [], changed: [] },
        expiring: [],
        ...domain,
      },
    ],
  };
}

const labels = { beforeLabel: 'old', afterLabel: 'new', maxList: 2 };

describe('diff reports', () => {
  it.each([
    [604800, '7d'],
    [129600, '36h'],
    [5400, '90m'],
    [45, '45s'],
    [0, '0s'],
  ])('formatWindow(%i) = %s', (s, text) => expect(formatWindow(s)).toBe(text));

  it('cuts long lists and says how many more there are', () => {
    const d = diff({ testRecipients: { added: [tr(1), tr(2), tr(3), tr(4)], removed: [], changed: [] } });
    const text = renderText(d, labels);
    expect(text).toContain('  test recipients: +4 -0 ~0\n');
    expect(text).toContain('    + u2@example.com -> u2@z.example (keeps the primary copy; mail/u2)\n');
    expect(text).not.toContain('u3@example.com');
    expect(text).toContain('    ... and 2 more (-o json lists them all)\n');
    expect(text.trimEnd().split('\n').at(-1)).toBe('1 domain changed, 3 unchanged');
    const md = renderMarkdown(d, labels);
    expect(md).toContain('<details><summary>test recipients added (4)</summary>');
    expect(md).toContain('- … and 2 more (`-o json` lists them all)');
  });

  it('markdown escapes pipes in table cells', () => {
    const md = renderMarkdown(
      diff({ fields: [{ field: 'destinations.allow', before: null, after: 'a|b' }] }),
      labels,
    );
    expect(md).toContain('| destinations.allow | — | `a\\|b` |');
  });

  it('an unchanged domain with expiring TestRecipients is listed as such', () => {
    const d = {
      ...diff({ change: 'unchanged', expiring: [{ ...tr(1), expiresAt: '2026-06-03T00:00:00Z' }] }),
      changed: false,
      unchangedDomains: 1,
    };
    expect(renderText(d, labels)).toBe(
      '--- old\n+++ new\nexample.com: unchanged\n  test recipients expiring within 7d:\n    u1@example.com at 2026-06-03T00:00:00Z\nno routing changes (1 domain unchanged)\n',
    );
  });
});
