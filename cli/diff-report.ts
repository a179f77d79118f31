// The text and markdown renderings of a RoutingDiff (routing/diff.ts) for `mailroute diff`. Pure. Long lists are cut
// at `maxList` entries with a line saying how many more there are (`-o json` always has them all).
import type {
  DiffValue,
  DomainDiff,
  FieldChange,
  RecipientDiff,
  RoutingDiff,
  TestRecipientEntry,
} from '../routing/diff.ts';
import type { PlanJson } from '../routing/resolve.ts';

export interface ReportOptions {
  /** What the two sides are, e.g. "examples/a" and "cluster mailroute-system/mailroute-routing". */
  beforeLabel: string;
  afterLabel: string;
  /** Longest list printed (TestRecipients, accounts); default 20. */
  maxList?: number;
}

const show = (v: DiffValue): string => (v === null ? '(none)' : String(v));

/** "7d", "36h", "90m", "45s": the largest unit that divides the seconds. */
export function formatWindow(seconds: number): string {
  if (seconds > 0 && seconds % 86_400 === 0) return `${seconds / 86_400}d`;
  if (seconds > 0 && seconds % 3_600 === 0) return `${seconds / 3_600}h`;
  if (seconds > 0 && seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

function trText(t: TestRecipientEntry): string {
  const opts = [
    t.keepPrimaryCopy ? 'keeps the primary copy' : 'copy only',
    ...(t.expiresAt !== null ? [`expires ${t.expiresAt}`] : []),
  ];
  return `${t.address} -> ${t.forwardTo} (${opts.join(', ')}; ${t.source})`;
}

function fieldText(f: FieldChange): string {
  return `${f.field}: ${show(f.before)} -> ${show(f.after)}`;
}

/** The legs of a plan on one line: "primary google -> a@x (Notify), copy zoho -> a@y (Suppress)". */
function legsText(p: PlanJson): string {
  if (p.verdict !== 'accept') return `${p.verdict} (${p.reply})`;
  return p.legs.map((l) => `${l.role} ${l.server} -> ${l.recipient} (${l.bounces})`).join(', ');
}

function capped<T>(items: readonly T[], max: number, line: (t: T) => string, indent: string): string[] {
  const out = items.slice(0, max).map((t) => `${indent}${line(t)}`);
  if (items.length > max) out.push(`${indent}... and ${items.length - max} more (-o json lists them all)`);
  return out;
}

function domainHeadline(d: DomainDiff): string {
  switch (d.change) {
    case 'added':
      return `${d.domain}: added`;
    case 'removed':
      return `${d.domain}: removed (mail for it is refused: 554 5.7.1 relay access denied)`;
    case 'changed':
      return `${d.domain}: changed`;
    case 'unchanged':
      return `${d.domain}: unchanged`;
  }
}

function summary(diff: RoutingDiff): string {
  const changed = diff.domains.filter((d) => d.change !== 'unchanged').length;
  const recipients = diff.recipients.filter((r) => r.changed).length;
  if (!diff.changed)
    return `no routing changes (${diff.unchangedDomains} domain${diff.unchangedDomains === 1 ? '' : 's'} unchanged)`;
  const parts = [`${changed} domain${changed === 1 ? '' : 's'} changed, ${diff.unchangedDomains} unchanged`];
  if (diff.recipients.length > 0)
    parts.push(`${recipients}/${diff.recipients.length} recipients route differently`);
  return parts.join('; ');
}

export function renderText(diff: RoutingDiff, opts: ReportOptions): string {
  const max = opts.maxList ?? 20;
  const lines = [`--- ${opts.beforeLabel}`, `+++ ${opts.afterLabel}`];
  for (const d of diff.domains) {
    lines.push(domainHeadline(d));
    for (const f of d.fields) lines.push(`  ${fieldText(f)}`);
    for (const s of d.servers) {
      if (s.change === 'changed') for (const f of s.fields) lines.push(`  server ${s.name}: ${fieldText(f)}`);
      else {
        const side = s.change === 'added' ? 'after' : 'before';
        const desc = s.fields.map((f) => `${f.field}=${show(f[side])}`).join(' ');
        lines.push(`  server ${s.name}: ${s.change} (${desc})`);
      }
    }
    for (const a of d.accounts) {
      lines.push(`  accounts on ${a.server}: +${a.added.length} -${a.removed.length}`);
      lines.push(...capped(a.added, max, (x) => `+ ${x}`, '    '));
      lines.push(...capped(a.removed, max, (x) => `- ${x}`, '    '));
    }
    const t = d.testRecipients;
    if (t.added.length + t.removed.length + t.changed.length > 0) {
      lines.push(`  test recipients: +${t.added.length} -${t.removed.length} ~${t.changed.length}`);
      lines.push(...capped(t.added, max, (x) => `+ ${trText(x)}`, '    '));
      lines.push(...capped(t.removed, max, (x) => `- ${trText(x)}`, '    '));
      lines.push(
        ...capped(t.changed, max, (x) => `~ ${x.address}: ${x.fields.map(fieldText).join('; ')}`, '    '),
      );
    }
    if (d.expiring.length > 0) {
      lines.push(`  test recipients expiring within ${formatWindow(diff.expiringWithinSeconds)}:`);
      lines.push(...capped(d.expiring, max, (x) => `${x.address} at ${x.expiresAt ?? ''}`, '    '));
    }
  }
  for (const r of diff.recipients) {
    lines.push(`recipient ${r.recipient}: ${r.changed ? 'changed' : 'unchanged'}`);
    if (r.changed) {
      lines.push(`  before: ${legsText(r.before)}`);
      lines.push(`  after:  ${legsText(r.after)}`);
    } else lines.push(`  ${legsText(r.after)}`);
  }
  lines.push(summary(diff));
  return `${lines.join('\n')}\n`;
}

/** Markdown table cells: pipes and newlines would break the row. */
const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
const code = (v: DiffValue): string => (v === null ? '—' : `\`${cell(String(v))}\``);

function recipientRow(r: RecipientDiff): string {
  return `| \`${cell(r.recipient)}\` | ${cell(legsText(r.before))} | ${cell(legsText(r.after))} |`;
}

/** A pull-request comment: a summary line, then one section per domain, and the recipients' legs. */
export function renderMarkdown(diff: RoutingDiff, opts: ReportOptions): string {
  const max = opts.maxList ?? 20;
  const out = [
    '### mailroute routing diff',
    '',
    `\`${cell(opts.beforeLabel)}\` → \`${cell(opts.afterLabel)}\`: **${summary(diff)}**`,
  ];
  for (const d of diff.domains) {
    out.push('', `#### ${domainHeadline(d)}`);
    const rows: string[] = [];
    for (const f of d.fields) rows.push(`| ${f.field} | ${code(f.before)} | ${code(f.after)} |`);
    for (const s of d.servers)
      for (const f of s.fields)
        rows.push(`| server ${s.name} (${s.change}): ${f.field} | ${code(f.before)} | ${code(f.after)} |`);
    if (rows.length > 0) out.push('', '| field | before | after |', '|---|---|---|', ...rows);
    const list = (title: string, items: string[]): void => {
      if (items.length === 0) return;
      const shown = items.slice(0, max).map((i) => `- ${i}`);
      if (items.length > max) shown.push(`- … and ${items.length - max} more (\`-o json\` lists them all)`);
      out.push('', `<details><summary>${title} (${items.length})</summary>`, '', ...shown, '', '</details>');
    };
    for (const a of d.accounts) {
      list(
        `accounts added on ${a.server}`,
        a.added.map((x) => `\`${x}\``),
      );
      list(
        `accounts removed on ${a.server}`,
        a.removed.map((x) => `\`${x}\``),
      );
    }
    const tr = (t: TestRecipientEntry): string => `\`${trText(t)}\``;
    list('test recipients added', d.testRecipients.added.map(tr));
    list('test recipients removed', d.testRecipients.removed.map(tr));
    list(
      'test recipients changed',
      d.testRecipients.changed.map((c) => `\`${c.address}\`: ${c.fields.map(fieldText).join('; ')}`),
    );
    list(
      `test recipients expiring within ${formatWindow(diff.expiringWithinSeconds)}`,
      d.expiring.map((x) => `\`${x.address}\` at ${x.expiresAt ?? ''}`),
    );
  }
  if (diff.recipients.length > 0) {
    out.push('', '#### Recipients', '', '| recipient | before | after |', '|---|---|---|');
    out.push(...diff.recipients.map(recipientRow));
  }
  return `${out.join('\n')}\n`;
}
