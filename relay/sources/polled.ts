// The shared machinery of file-based sources: load, keep the last good snapshot, watch, reload, swap atomically.
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import { SourceState } from './state.ts';
import type { Credentials, RoutingSnapshot, RoutingSource } from './types.ts';
import { fingerprint, watchPath, type LoadReport, type ReloadReason } from './watcher.ts';

/** retry: the load failed for a reason a retry may cure (EACCES, EMFILE, a compile worker that died), not content. */
export type LoadOutcome =
  { ok: true; snapshot: RoutingSnapshot; warnings: string[] } | { ok: false; errors: string[]; retry?: true };

export interface PolledSourceOptions {
  kind: string;
  path: string;
  load: () => Promise<LoadOutcome>;
  logger: Logger;
  clock?: () => Date;
  /**
   * What `path` must be when the source starts: start() rejects, naming `flag`, when it is missing or unreadable (a
   * start-up failure: the relay exits). Content that does not load only leaves the relay without a table (not ready).
   */
  required: { flag: string; kind: 'directory' | 'file' };
  pollMs?: number;
  debounceMs?: number;
}

/**
 * A digest of a set of credentials: Secrets are not part of the routing revision (they never enter the table), so a
 * rotated password is noticed by this instead. Never logged with the values.
 */
function credentialsDigest(secrets: ReadonlyMap<string, Credentials>): string {
  const h = createHash('sha256');
  for (const [k, v] of [...secrets].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    h.update(JSON.stringify([k, v.username, v.password]));
  return h.digest('hex');
}

function sameErrors(a: readonly string[] | undefined, b: readonly string[]): boolean {
  return a !== undefined && a.length === b.length && a.every((e, i) => e === b[i]);
}

async function requirePath(path: string, r: PolledSourceOptions['required']): Promise<void> {
  const fail = (why: string): Error => new Error(`${r.flag} ${path}: ${why}`);
  const code = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? String(err);
  const st = await stat(path).catch((err: unknown) => {
    throw fail(code(err));
  });
  if (r.kind === 'directory' && !st.isDirectory()) throw fail('not a folder');
  if (r.kind === 'file' && st.isDirectory()) throw fail('a folder, not a file');
  await access(path, r.kind === 'directory' ? constants.R_OK | constants.X_OK : constants.R_OK).catch(
    (err: unknown) => {
      throw fail(code(err));
    },
  );
}

export function createPolledSource(opts: PolledSourceOptions): RoutingSource {
  const clock = opts.clock ?? (() => new Date());
  const log = opts.logger;
  const state = new SourceState();
  let watcher: { close(): void } | undefined;

  const reload = async (why: ReloadReason = 'change'): Promise<LoadReport> => {
    let outcome: LoadOutcome;
    try {
      outcome = await opts.load();
    } catch (err) {
      // a load that throws is a fault of the moment (the loaders return content errors), worth a retry
      outcome = { ok: false, errors: [err instanceof Error ? err.message : String(err)], retry: true };
    }
    if (!outcome.ok) {
      const report: LoadReport = outcome.retry ? 'retry' : 'done';
      // a retry that fails the same way is not logged again (a file left unreadable would log every retry)
      const repeated = why === 'retry' && sameErrors(state.lastError?.errors, outcome.errors);
      state.lastError = { at: clock(), errors: outcome.errors };
      if (repeated) return report;
      log.error(
        {
          source: opts.kind,
          path: opts.path,
          errors: outcome.errors,
          keeping: state.current?.revision ?? null,
        },
        state.current
          ? 'routing: invalid change, keeping the last good table'
          : 'routing: cannot load the routing table',
      );
      return report;
    }
    state.lastError = undefined;
    for (const w of outcome.warnings)
      log.warn({ source: opts.kind, path: opts.path, issue: w }, 'routing: compile issue');
    const previous = state.current;
    const current = outcome.snapshot;
    const sameTable = previous !== undefined && previous.revision === current.revision;
    // A changed Secret (a rotated password) is a change too, within the same poll as a manifest change.
    if (sameTable && credentialsDigest(previous.secrets) === credentialsDigest(current.secrets))
      return 'done';
    if (sameTable) {
      log.info(
        {
          source: opts.kind,
          path: opts.path,
          revision: current.revision,
          credentials: [...current.secrets.keys()],
        },
        'routing: credentials changed',
      );
    } else {
      log.info(
        {
          source: opts.kind,
          path: opts.path,
          revision: current.revision,
          previous: previous?.revision ?? null,
          domains: Object.keys(current.table.domains).length,
        },
        'routing: table loaded',
      );
    }
    state.publish(current, log);
    return 'done';
  };

  return state.source(
    opts.kind,
    async () => {
      await requirePath(opts.path, opts.required);
      const fp = await fingerprint(opts.path);
      const first = await reload();
      watcher = watchPath(
        {
          path: opts.path,
          retry: first === 'retry',
          ...(opts.pollMs !== undefined ? { pollMs: opts.pollMs } : {}),
          ...(opts.debounceMs !== undefined ? { debounceMs: opts.debounceMs } : {}),
        },
        fp,
        reload,
      );
    },
    () => watcher?.close(),
  );
}
