// --routing-file FILE: a compiled RoutingTable (`mailroute render` output, or the ConfigMap key mounted as a file),
// watched. A file that does not parse or does not look like a RoutingTable keeps the last good table.
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { isTransientReadError } from '../../lib/manifests.ts';
import { tableRevision } from '../../routing/compile.ts';
import { API_VERSION, ROUTING_TABLE_FORMAT, type RoutingTable } from '../../routing/model.ts';
import { createPolledSource, type LoadOutcome } from './polled.ts';
import type { RoutingSource } from './types.ts';

/** Structural check of a RoutingTable; returns the problems found. */
export function checkRoutingTable(x: unknown): string[] {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return ['not a JSON object'];
  const t = x as Record<string, unknown>;
  const errs: string[] = [];
  if (t['apiVersion'] !== API_VERSION) errs.push(`apiVersion: must be ${API_VERSION}`);
  if (t['kind'] !== 'RoutingTable') errs.push('kind: must be RoutingTable');
  // A newer format holds fields this version would ignore and route by differently: refused, never half-read (the
  // source keeps the last table it read). Checked before the rest: the rest of a newer table may look different.
  const format = t['format'];
  if (format !== undefined) {
    if (typeof format !== 'number' || !Number.isSafeInteger(format) || format < 1)
      return [...errs, `format: must be a whole number from 1, not ${JSON.stringify(format)?.slice(0, 40)}`];
    if (format > ROUTING_TABLE_FORMAT)
      return [
        ...errs,
        `format: ${format}: this relay routes by tables of format ${ROUTING_TABLE_FORMAT} at most (a newer operator wrote this one); it keeps the last table it read until the relay is upgraded`,
      ];
  }
  const domains = t['domains'];
  if (typeof domains !== 'object' || domains === null || Array.isArray(domains))
    errs.push('domains: must be an object');
  else {
    for (const [name, d] of Object.entries(domains as Record<string, unknown>)) {
      if (typeof d !== 'object' || d === null) {
        errs.push(`domains.${name}: must be an object`);
        continue;
      }
      const r = d as Record<string, unknown>;
      if (r['domain'] !== name) errs.push(`domains.${name}.domain: must equal the key`);
      if (typeof r['servers'] !== 'object' || r['servers'] === null)
        errs.push(`domains.${name}.servers: must be an object`);
    }
  }
  if (!Array.isArray(t['sources'])) errs.push('sources: must be an array');
  const removed = t['removedDomains'];
  if (
    removed !== undefined &&
    (typeof removed !== 'object' ||
      removed === null ||
      Array.isArray(removed) ||
      Object.values(removed).some((v) => typeof v !== 'string'))
  )
    errs.push('removedDomains: must be an object of RFC 3339 strings');
  return errs;
}

export async function loadRoutingFile(
  file: string,
  clock: () => Date = () => new Date(),
): Promise<LoadOutcome> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const errors = [`${file}: ${err instanceof Error ? err.message : String(err)}`];
    return { ok: false, errors, ...(isTransientReadError(err) ? { retry: true as const } : {}) };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return { ok: false, errors: [`${file}: not JSON: ${err instanceof Error ? err.message : String(err)}`] };
  }
  const errs = checkRoutingTable(parsed);
  if (errs.length > 0) return { ok: false, errors: errs.map((e) => `${file}: ${e}`) };
  const table = parsed as RoutingTable;
  return {
    ok: true,
    warnings: [],
    snapshot: { table, revision: tableRevision(table), secrets: new Map(), loadedAt: clock(), origin: file },
  };
}

export function createRoutingFileSource(opts: {
  file: string;
  logger: Logger;
  clock?: () => Date;
  pollMs?: number;
}): RoutingSource {
  return createPolledSource({
    kind: 'routing-file',
    path: opts.file,
    required: { flag: '--routing-file', kind: 'file' },
    load: () => loadRoutingFile(opts.file, opts.clock),
    logger: opts.logger,
    ...(opts.clock ? { clock: opts.clock } : {}),
    ...(opts.pollMs !== undefined ? { pollMs: opts.pollMs } : {}),
  });
}
