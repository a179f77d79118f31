// mailroute check -f PATH... : validates manifests offline (schema, CEL rules, cross-object issues).
// Exit 0 when everything is valid, 1 with one `file: Kind/name: field: message` line per problem, 2 on usage errors.
import { backscatterRisk } from '../../routing/backscatter.ts';
import type { CompileResult } from '../../routing/compile.ts';
import type { ParsedManifests } from '../../routing/parse.ts';
import type { RoutingTable } from '../../routing/model.ts';
import { stageAt } from '../../routing/schedule.ts';
import { objectName } from '../../routing/validate.ts';
import { loadAndCompile } from '../../lib/manifests.ts';
import { fileFlag, filesFrom, guard, limitFlags, limitsFrom, parseFlags } from './offline-common.ts';

const USAGE =
  'usage: mailroute check -f PATH... [--at TIME] [--max-manifest-size 4MiB] [--max-manifests-total 16MiB]\n';

/** The ConfigMap limit is 1 MiB; above this the operator must shard the table. */
export const TABLE_WARN_BYTES = 900 * 1024;

export async function run(argv: string[]): Promise<number> {
  return guard('check', USAGE, async () => {
    const { values } = parseFlags(
      argv,
      { ...fileFlag, ...limitFlags, at: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      'check',
    );
    if (values.help === true) {
      process.stdout.write(USAGE);
      return 0;
    }
    const now = values.at === undefined ? new Date() : parseTime(values.at);
    const { loaded, result, errorLines, issueLines } = await loadAndCompile(
      filesFrom(values, 'check'),
      limitsFrom(values, 'check'),
    );
    const out: string[] = [...errorLines, ...issueLines];
    if (loaded.objects.length === 0 && loaded.claims.length === 0 && loaded.errors.length === 0)
      out.push(`${filesFrom(values, 'check').join(', ')}: no mailroute objects found`);
    for (const w of checkWarnings(loaded, result, now)) process.stdout.write(`warning: ${w}\n`);
    for (const l of stageLines(result.table, now)) process.stdout.write(`stage: ${l}\n`);
    for (const n of result.notices)
      process.stdout.write(`warning: ${n.kind}/${n.namespace}/${n.name}: ${n.message} (${n.reason})\n`);
    if (out.length > 0) {
      process.stdout.write(out.map((l) => `${l}\n`).join(''));
      process.stdout.write(`${out.length} problem${out.length === 1 ? '' : 's'}\n`);
      return 1;
    }
    const kinds = [
      ...loaded.objects.map((o) => o.kind),
      ...loaded.claims.map((c) => c.kind),
      ...loaded.secrets.map(() => 'Secret'),
    ];
    process.stdout.write(`${okLine(kinds, result.revision)}\n`);
    return 0;
  });
}

function parseTime(s: string): Date {
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) throw new Error(`--at: not a date-time: ${s}`);
  return d;
}

/** `ok: 3 objects (1 MailDomain, 1 DeliveryPolicy, 1 Secret), revision 0123456789ab`: the total counts every kind listed. */
export function okLine(kinds: readonly string[], revision: string): string {
  return `ok: ${kinds.length} object${kinds.length === 1 ? '' : 's'} (${countKinds(kinds)}), revision ${revision.slice(0, 12)}`;
}

function countKinds(kinds: readonly string[]): string {
  const m = new Map<string, number>();
  for (const k of kinds) m.set(k, (m.get(k) ?? 0) + 1);
  return [...m].map(([k, n]) => `${n} ${k}`).join(', ');
}

/**
 * One line per policy with dated stages: the stage in force at `now` (--at) and the next transition, from the same
 * routing/schedule.ts the relay and the operator use.
 */
export function stageLines(table: RoutingTable, now: Date): string[] {
  const out: string[] = [];
  for (const route of Object.values(table.domains)) {
    if (route.policy === undefined || route.stages === undefined) continue;
    const s = stageAt(route.stages, now);
    const name = objectName('DeliveryPolicy', route.policy.namespace, route.policy.name);
    out.push(
      `${name}: ${route.domain} is in stage ${s.name} at ${now.toISOString()}${
        s.until !== undefined
          ? `; next transition ${s.until}`
          : "; every stage has ended (the policy's own fields route; the stages can be removed)"
      }`,
    );
  }
  return out;
}

/**
 * Problems that do not fail `check`: an oversized table, backscatter, softBounce with no end, TestRecipients without
 * effect or expired.
 */
export function checkWarnings(
  loaded: Pick<ParsedManifests, 'origins'>,
  result: Pick<CompileResult, 'json' | 'table'>,
  now: Date,
): string[] {
  const w: string[] = [];
  const bytes = Buffer.byteLength(result.json, 'utf8');
  if (bytes > TABLE_WARN_BYTES) {
    w.push(
      `the compiled routing table is ${Math.round(bytes / 1024)} KiB: a ConfigMap holds at most 1 MiB, so the operator shards it; consider recipientVerification instead of long accounts lists`,
    );
  }
  for (const route of Object.values(result.table.domains)) {
    const risk = backscatterRisk(route);
    if (risk !== undefined) {
      const md = route.mailDomain;
      const file = loaded.origins.get(`MailDomain/${md.namespace}/${md.name}`) ?? '(input)';
      w.push(`${file}: MailDomain/${md.name}: ${route.domain} ${risk}`);
    }
    // softBounce without an end keeps every permanent refusal queued for the whole queue lifetime, indefinitely
    if (route.softBounce === true && route.policy !== undefined) {
      const p = route.policy;
      const file = loaded.origins.get(`DeliveryPolicy/${p.namespace}/${p.name}`) ?? '(input)';
      w.push(
        `${file}: DeliveryPolicy/${p.name}: spec.softBounce: on with no end: every 5xx for ${route.domain} is retried until the queue lifetime ends and its sender hears nothing for days; turn it off after the cutover, or set it in a dated stage instead`,
      );
    }
    for (const [address, tr] of Object.entries(route.testRecipients)) {
      const file = loaded.origins.get(`TestRecipient/${tr.source.namespace}/${tr.source.name}`) ?? '(input)';
      if (route.mode !== 'Dual') {
        w.push(
          `${file}: TestRecipient/${tr.source.name}: ${address} has no effect while the policy's mode is ${route.mode ?? 'unset'}`,
        );
      } else if (tr.expiresAt !== undefined && Date.parse(tr.expiresAt) <= now.getTime()) {
        w.push(
          `${file}: TestRecipient/${tr.source.name}: spec.expiresAt: expired at ${tr.expiresAt}; ${address} routes like everyone else`,
        );
      }
    }
  }
  return w;
}
