// The shared machinery of file-based sources: load, keep the last good snapshot, watch, reload, swap atomically.
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { RoutingSnapshot, RoutingSource, SourceError } from './types.ts';
import { fingerprint, watchPath } from './watcher.ts';

export type LoadOutcome =
  { ok: true; snapshot: RoutingSnapshot; warnings: string[] } | { ok: false; errors: string[] };

export interface PolledSourceOptions {
  kind: string;
  path: string;
  load: () => Promise<LoadOutcome>;
  logger: Logger;
  clock?: () => Date;
  filter?: (name: string) => boolean;
  /**
   * What `path` must be when the source starts: start() rejects, naming `flag`, when it is missing or unreadable (a
   * start-up failure: the relay exits). Content that does not load only leaves the relay without a table (not ready).
   */
  required: { flag: string; kind: 'directory' | 'file' };
  pollMs?: number;
  debounceMs?: number;
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
  const listeners = new Set<(s: RoutingSnapshot) => void>();
  let current: RoutingSnapshot | undefined;
  let lastError: SourceError | undefined;
  let watcher: { close(): void } | undefined;

  const reload = async (): Promise<void> => {
    let outcome: LoadOutcome;
    try {
      outcome = await opts.load();
    } catch (err) {
      outcome = { ok: false, errors: [err instanceof Error ? err.message : String(err)] };
    }
    if (!outcome.ok) {
      lastError = { at: clock(), errors: outcome.errors };
      log.error(
        { source: opts.kind, path: opts.path, errors: outcome.errors, keeping: current?.revision ?? null },
        current
          ? 'routing: invalid change, keeping the last good table'
          : 'routing: cannot load the routing table',
      );
      return;
    }
    lastError = undefined;
    for (const w of outcome.warnings)
      log.warn({ source: opts.kind, path: opts.path, issue: w }, 'routing: compile issue');
    if (current?.revision === outcome.snapshot.revision) return;
    const previous = current?.revision;
    current = outcome.snapshot;
    log.info(
      {
        source: opts.kind,
        path: opts.path,
        revision: current.revision,
        previous: previous ?? null,
        domains: Object.keys(current.table.domains).length,
      },
      'routing: table loaded',
    );
    for (const l of listeners) {
      try {
        l(current);
      } catch (err) {
        log.error({ err }, 'routing: change listener failed');
      }
    }
  };

  return {
    kind: opts.kind,
    async start() {
      await requirePath(opts.path, opts.required);
      const fp = await fingerprint(opts.path, opts.filter);
      await reload();
      watcher = watchPath(
        {
          path: opts.path,
          ...(opts.filter ? { filter: opts.filter } : {}),
          ...(opts.pollMs !== undefined ? { pollMs: opts.pollMs } : {}),
          ...(opts.debounceMs !== undefined ? { debounceMs: opts.debounceMs } : {}),
        },
        fp,
        reload,
      );
    },
    current: () => current,
    lastError: () => lastError,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close() {
      watcher?.close();
      return Promise.resolve();
    },
  };
}
