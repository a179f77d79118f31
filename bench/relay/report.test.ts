import { describe, expect, it } from 'vitest';
import { markdownTables, replaceSection, SECTION_END, SECTION_START, svgChart } from './report.ts';
import type { SystemSummary } from './stats.ts';

const s = (system: SystemSummary['system'], e2eRate: number | null): SystemSummary => ({
  workload: 'dual-4k',
  system,
  runs: 2,
  failedRuns: 0,
  acceptedRate: e2eRate,
  e2eRate,
  e2eMin: e2eRate,
  e2eMax: e2eRate,
  p50Ms: 1.25,
  p99Ms: 9.5,
  cpuSecondsPer1k: 2.5,
  machineCpuSecondsPer1k: system === 'ceiling' ? null : 3.75,
  othersCpuSecondsPer1k: system === 'ceiling' ? null : 1.25,
  peakRssMiB: 100,
  peakPssMiB: 50,
  cpuPressure: 0.25,
});
const titles = new Map([['dual-4k', 'dual, 4 KiB, 1 rcpt']]);

describe('replaceSection', () => {
  const section = `${SECTION_START}\nnew\n${SECTION_END}`;
  it('replaces only the text between the markers', () => {
    const doc = `# B\n\n## Relay vs Postfix\n\n${SECTION_START}\nold\n${SECTION_END}\n\n## Operator\n\nkeep\n`;
    expect(replaceSection(doc, section)).toBe(
      `# B\n\n## Relay vs Postfix\n\n${section}\n\n## Operator\n\nkeep\n`,
    );
  });
  it('appends the heading and section when missing', () => {
    expect(replaceSection('# B\n\nintro\n', section)).toBe(
      `# B\n\nintro\n\n## Relay vs Postfix\n\n${section}\n`,
    );
  });
});

describe('markdownTables', () => {
  it('has one row per system and a ratio row', () => {
    const md = markdownTables(
      [s('postfix', 400), s('mailroute', 600)],
      [{ workload: 'dual-4k', accepted: 1.5, e2e: 1.5, perRoundE2e: [1.4, 1.6] }],
      titles,
    );
    expect(md).toContain(
      '| dual, 4 KiB, 1 rcpt | postfix | 2 | 400 | 400 (400–400) | 1.3 | 9.5 | 2.50 | 3.75 | 100 (50) |',
    );
    expect(md).toContain('| dual, 4 KiB, 1 rcpt | 1.50× | 1.50× | 1.40×, 1.60× |');
  });
});

describe('svgChart', () => {
  it('draws a bar per measured system and n/a for missing ones', () => {
    const svg = svgChart([s('ceiling', 8000), s('postfix', 450)], ['dual-4k'], titles, 'sub');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('<title>ceiling: 8000 msg/s</title>');
    expect(svg).toContain('<title>postfix: 450 msg/s</title>');
    expect(svg).toContain('n/a');
    expect(svg.trim().endsWith('</svg>')).toBe(true);
  });
});
