// mailroute diff -f OLD... --to NEW...                     two manifest sets
// mailroute diff --cluster [--context C] [--kubeconfig F] [--configmap NS/NAME] -f NEW...   the live routing -> a folder
// What a routing change does: per domain the mode, primary/secondary, scope, servers (TLS, auth) and TestRecipients
// added, removed or expiring; with --recipient (or --sample N) the legs of recipients before and after. The
// comparison is routing/diff.ts (pure); this file loads the two sides and prints. Exit codes like diff(1): 0 no
// change, 1 changes, 2 trouble (bad flags, invalid manifests on either side, the cluster's ConfigMap unreadable).
import { tableRevision } from '../../routing/compile.ts';
import { diffRecipients, diffTables, sampleRecipients, type RoutingDiff } from '../../routing/diff.ts';
import type { RoutingTable } from '../../routing/model.ts';
import { parseDuration } from '../../lib/flags.ts';
import { renderMarkdown, renderText } from '../diff-report.ts';
import { loadAndCompile, type ManifestLimits } from '../../lib/manifests.ts';
import { fileFlag, limitFlags, limitsFrom, guard, parseFlags, UsageError } from './offline-common.ts';

const USAGE = `usage: mailroute diff -f OLD... --to NEW... [flags]
       mailroute diff --cluster [--context NAME] [--kubeconfig FILE] [--configmap NS/NAME] -f NEW... [flags]
flags: --recipient ADDRESS (repeatable)  --sample N  --within DURATION (default 7d)  --at TIME  -o text|markdown|json
exit: 0 no change, 1 changes, 2 error
`;

const DEFAULT_WITHIN = '7d';

/** Thrown for anything that makes the comparison impossible: exit 2 with the message. */
class DiffError extends Error {}

async function tableOf(paths: string[], side: string, limits: ManifestLimits): Promise<RoutingTable> {
  const { result, errorLines, issueLines } = await loadAndCompile(paths, limits);
  if (errorLines.length > 0)
    throw new DiffError(`${side} manifests are invalid:\n${errorLines.map((l) => `  ${l}`).join('\n')}`);
  for (const l of issueLines) process.stderr.write(`${side}: issue (left out of the table): ${l}\n`);
  return result.table;
}

export async function run(argv: string[]): Promise<number> {
  // exit 1 is an answer here (changes), so any error exits 2
  return guard('diff', USAGE, () => diff(argv), 2);
}

async function diff(argv: string[]): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      ...fileFlag,
      ...limitFlags,
      to: { type: 'string', multiple: true },
      cluster: { type: 'boolean' },
      context: { type: 'string' },
      kubeconfig: { type: 'string' },
      configmap: { type: 'string' },
      recipient: { type: 'string', multiple: true },
      sample: { type: 'string' },
      within: { type: 'string' },
      at: { type: 'string' },
      output: { type: 'string', short: 'o', default: 'text' },
      help: { type: 'boolean', short: 'h' },
    },
    'diff',
  );
  if (values.help === true) {
    process.stdout.write(USAGE);
    return 0;
  }
  const output = values.output;
  if (output !== 'text' && output !== 'markdown' && output !== 'json')
    throw new UsageError('mailroute diff: -o must be text, markdown or json');
  const files = [...(values.f ?? []), ...(values.filename ?? [])];
  const to = values.to ?? [];
  const cluster = values.cluster === true;
  if (files.length === 0) throw new UsageError('mailroute diff: -f PATH is required');
  if (cluster && to.length > 0)
    throw new UsageError('mailroute diff: --cluster compares the cluster with -f NEW...; --to is not used');
  if (!cluster && to.length === 0)
    throw new UsageError(
      'mailroute diff: --to NEW... is required (or --cluster to compare with the cluster)',
    );
  if (!cluster)
    for (const f of ['context', 'kubeconfig', 'configmap'] as const)
      if (values[f] !== undefined) throw new UsageError(`mailroute diff: --${f} needs --cluster`);
  const now = values.at === undefined ? new Date() : new Date(values.at);
  if (Number.isNaN(now.getTime()))
    throw new UsageError(`mailroute diff: --at: not a date-time: ${values.at}`);
  const withinMs = parseDuration(values.within ?? DEFAULT_WITHIN);
  if (withinMs === undefined)
    throw new UsageError(
      `mailroute diff: --within: expected a duration like 7d, 36h or 90m, got ${values.within}`,
    );
  const sample = values.sample === undefined ? 0 : Number(values.sample);
  if (!Number.isInteger(sample) || sample < 0)
    throw new UsageError(`mailroute diff: --sample: expected a count, got ${values.sample}`);
  const limits = limitsFrom(values, 'diff');

  let before: RoutingTable;
  let beforeLabel: string;
  let after: RoutingTable;
  let afterLabel: string;
  if (cluster) {
    // Loaded only here: the Kubernetes client takes a while to import, and the offline comparison needs none of it.
    const { parseConfigMapRef, readClusterTable } = await import('../cluster-routing.ts');
    const ref = parseConfigMapRef(values.configmap);
    if (typeof ref === 'string') throw new UsageError(`mailroute diff: ${ref}`);
    // Local manifests first: a typo in the folder is reported without waiting for the cluster.
    after = await tableOf(files, 'new (-f)', limits);
    const live = await readClusterTable({
      ...ref,
      ...(values.kubeconfig !== undefined ? { kubeconfig: values.kubeconfig } : {}),
      ...(values.context !== undefined ? { context: values.context } : {}),
    });
    if (!live.ok) throw new DiffError(live.error);
    before = live.table;
    beforeLabel = `cluster ${live.context} ${ref.namespace}/${ref.name} (revision ${live.revision.slice(0, 12)})`;
    afterLabel = `${files.join(' ')} (revision ${tableRevision(after).slice(0, 12)})`;
  } else {
    before = await tableOf(files, 'old (-f)', limits);
    after = await tableOf(to, 'new (--to)', limits);
    beforeLabel = `${files.join(' ')} (revision ${tableRevision(before).slice(0, 12)})`;
    afterLabel = `${to.join(' ')} (revision ${tableRevision(after).slice(0, 12)})`;
  }

  const domains = diffTables(before, after, { now, expiringWithinMs: withinMs });
  const named = [...(values.recipient ?? []), ...sampleRecipients(domains, sample)];
  const recipients = diffRecipients(before, after, [...new Set(named)], now);
  const result = { ...domains, recipients, changed: domains.changed || recipients.some((r) => r.changed) };

  const labels = { beforeLabel, afterLabel };
  switch (output) {
    case 'json':
      process.stdout.write(`${JSON.stringify(diffJson(result, beforeLabel, afterLabel), null, 2)}\n`);
      break;
    case 'markdown':
      process.stdout.write(renderMarkdown(result, labels));
      break;
    case 'text':
      process.stdout.write(renderText(result, labels));
      break;
  }
  return result.changed ? 1 : 0;
}

/** The `-o json` document: RoutingDiff with the two sides named, keys in a fixed order (docs/routing.md). */
export function diffJson(d: RoutingDiff, before: string, after: string): object {
  return {
    format: d.format,
    before,
    after,
    at: d.at,
    expiringWithinSeconds: d.expiringWithinSeconds,
    changed: d.changed,
    unchangedDomains: d.unchangedDomains,
    domains: d.domains,
    recipients: d.recipients,
  };
}
