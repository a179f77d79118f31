// The report: markdown tables for docs/benchmarks.md and an SVG bar chart, as strings. Pure.
import type { RatioSummary, SystemSummary } from './stats.ts';
import type { SystemName } from './options.ts';

export const SECTION_START = '<!-- bench:relay:start -->';
export const SECTION_END = '<!-- bench:relay:end -->';
export const SECTION_HEADING = '## Relay vs Postfix';

const fmt = (v: number | null | undefined, digits = 0): string =>
  v === null || v === undefined
    ? '—'
    : v.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

export interface ReportContext {
  readonly command: string;
  readonly date: string;
  readonly mode: string;
  readonly machine: string;
  readonly versions: string;
  readonly resultFile: string;
  readonly titles: ReadonlyMap<string, string>;
  readonly notes: readonly string[];
  /** Up front: where the run stands against the targets (bench/relay/targets.ts). */
  readonly verdict?: string;
}

export function markdownTables(
  summary: readonly SystemSummary[],
  ratioRows: readonly RatioSummary[],
  titles: ReadonlyMap<string, string>,
): string {
  const rows = [
    '| workload | system | runs | accepted msg/s | end-to-end msg/s (min–max) | p50 ms | p99 ms | CPU s / 1k msgs | machine CPU s / 1k msgs | peak RSS MiB (PSS) | CPU pressure |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const s of summary) {
    const range =
      s.e2eMin !== null && s.e2eMax !== null && s.runs > 1 ? ` (${fmt(s.e2eMin)}–${fmt(s.e2eMax)})` : '';
    const failed = s.failedRuns > 0 ? ` (${s.failedRuns} failed)` : '';
    rows.push(
      `| ${titles.get(s.workload) ?? s.workload} | ${s.system} | ${s.runs}${failed} | ${fmt(s.acceptedRate)} | ${fmt(s.e2eRate)}${range} | ${fmt(s.p50Ms, 1)} | ${fmt(s.p99Ms, 1)} | ${fmt(s.cpuSecondsPer1k, 2)} | ${fmt(s.machineCpuSecondsPer1k, 2)} | ${fmt(s.peakRssMiB)} (${fmt(s.peakPssMiB)}) | ${s.cpuPressure === null ? '—' : `${Math.round(s.cpuPressure * 100)}%`} |`,
    );
  }
  const ratioLines = [
    '| workload | mailroute/Postfix accepted | mailroute/Postfix end to end | per round (end to end) |',
    '|---|---:|---:|---|',
  ];
  for (const r of ratioRows) {
    ratioLines.push(
      `| ${titles.get(r.workload) ?? r.workload} | ${fmt(r.accepted, 2)}× | ${fmt(r.e2e, 2)}× | ${r.perRoundE2e.map((x) => `${fmt(x, 2)}×`).join(', ')} |`,
    );
  }
  return `${rows.join('\n')}\n\n${ratioLines.join('\n')}\n`;
}

export function markdownSection(
  summary: readonly SystemSummary[],
  ratioRows: readonly RatioSummary[],
  ctx: ReportContext,
): string {
  return [
    SECTION_START,
    `Latest run: ${ctx.date}, mode \`${ctx.mode}\`, raw results in \`${ctx.resultFile}\`.`,
    '',
    '```sh',
    ctx.command,
    '```',
    '',
    `Machine: ${ctx.machine}  `,
    `Versions: ${ctx.versions}`,
    '',
    ...(ctx.verdict === undefined ? [] : [ctx.verdict, '']),
    markdownTables(summary, ratioRows, ctx.titles),
    '![messages/s by workload](bench-relay.svg)',
    '',
    ...ctx.notes.map((n) => `- ${n}`),
    SECTION_END,
  ].join('\n');
}

/** Replaces the text between the markers (markers included), or appends the section when they are missing. */
export function replaceSection(doc: string, section: string): string {
  const a = doc.indexOf(SECTION_START);
  const b = doc.indexOf(SECTION_END);
  if (a >= 0 && b > a) return doc.slice(0, a) + section + doc.slice(b + SECTION_END.length);
  const heading = doc.includes(SECTION_HEADING) ? '' : `${SECTION_HEADING}\n\n`;
  return `${doc.replace(/\n*$/, '\n\n')}${heading}${section}\n`;
}

const COLORS: Record<SystemName, string> = {
  ceiling: '#9e9e9e',
  postfix: '#1f77b4',
  mailroute: '#d62728',
  'mailroute-workers': '#ff7f0e',
  floor: '#2ca02c',
};

const esc = (s: string): string => s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

/** Grouped bars of end-to-end messages/s per workload on a log scale (the ceiling is an order of magnitude higher). */
export function svgChart(
  summary: readonly SystemSummary[],
  workloads: readonly string[],
  titles: ReadonlyMap<string, string>,
  subtitle: string,
): string {
  const systems: SystemName[] = ['ceiling', 'postfix', 'mailroute'];
  const values = summary.map((s) => s.e2eRate).filter((v): v is number => v !== null && v > 0);
  const maxV = Math.max(10, ...values);
  const top = 10 ** Math.ceil(Math.log10(maxV));
  const bottom = 10;
  const W = Math.max(560, 90 + workloads.length * 150);
  const H = 380;
  const plot = { x: 70, y: 50, w: W - 90, h: 250 };
  const y = (v: number): number =>
    plot.y + plot.h - ((Math.log10(Math.max(v, bottom)) - 1) / (Math.log10(top) - 1)) * plot.h;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">Relay vs Postfix: messages/s end to end (log scale)</text>`,
    `<text x="${W / 2}" y="36" text-anchor="middle" fill="#555">${esc(subtitle)}</text>`,
  ];
  for (let v = bottom; v <= top; v *= 10) {
    const yy = y(v).toFixed(1);
    out.push(`<line x1="${plot.x}" x2="${plot.x + plot.w}" y1="${yy}" y2="${yy}" stroke="#ddd"/>`);
    out.push(
      `<text x="${plot.x - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle">${v.toLocaleString('en-US')}</text>`,
    );
  }
  const groupW = plot.w / Math.max(1, workloads.length);
  const barW = Math.min(36, (groupW - 20) / systems.length);
  workloads.forEach((wl, i) => {
    const gx = plot.x + i * groupW + (groupW - barW * systems.length) / 2;
    systems.forEach((sys, j) => {
      const s = summary.find((x) => x.workload === wl && x.system === sys);
      const v = s?.e2eRate ?? null;
      const x = gx + j * barW;
      if (v === null || v <= 0) {
        out.push(
          `<text x="${(x + barW / 2).toFixed(1)}" y="${plot.y + plot.h - 4}" text-anchor="middle" fill="#999">n/a</text>`,
        );
        return;
      }
      const yy = y(v);
      out.push(
        `<rect x="${x.toFixed(1)}" y="${yy.toFixed(1)}" width="${(barW - 3).toFixed(1)}" height="${(plot.y + plot.h - yy).toFixed(1)}" fill="${COLORS[sys]}"><title>${sys}: ${Math.round(v)} msg/s</title></rect>`,
      );
      out.push(
        `<text x="${(x + (barW - 3) / 2).toFixed(1)}" y="${(yy - 3).toFixed(1)}" text-anchor="middle" font-size="9">${Math.round(v)}</text>`,
      );
    });
    out.push(
      `<text x="${(plot.x + i * groupW + groupW / 2).toFixed(1)}" y="${plot.y + plot.h + 16}" text-anchor="middle">${esc(titles.get(wl) ?? wl)}</text>`,
    );
  });
  out.push(`<line x1="${plot.x}" x2="${plot.x}" y1="${plot.y}" y2="${plot.y + plot.h}" stroke="#333"/>`);
  out.push(
    `<line x1="${plot.x}" x2="${plot.x + plot.w}" y1="${plot.y + plot.h}" y2="${plot.y + plot.h}" stroke="#333"/>`,
  );
  systems.forEach((sys, j) => {
    const lx = plot.x + j * 130;
    out.push(`<rect x="${lx}" y="${H - 30}" width="12" height="12" fill="${COLORS[sys]}"/>`);
    out.push(`<text x="${lx + 18}" y="${H - 20}">${sys}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
