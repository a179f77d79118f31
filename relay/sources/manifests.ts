// --manifests DIR: the YAML a cluster would get (MailDomain, DeliveryPolicy, TestRecipient, and v1 Secrets that
// satisfy authSecretRef; only those labelled mailroute.io/smtp-auth: "true" are used, as in a cluster), compiled with the routing core and watched. A change that does not parse or validate
// keeps the last good table; cross-object compile issues are logged and the objects concerned are left out, as the
// operator does.
import { stat } from 'node:fs/promises';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import {
  DEFAULT_MANIFEST_LIMITS,
  loadAndCompile,
  usableSecrets,
  type ManifestLimits,
} from '../../lib/manifests.ts';
import { createPolledSource, type LoadOutcome } from './polled.ts';
import type { RoutingSource } from './types.ts';

/** Reads and compiles every manifest file under dir with the routing core's loader (the same as `mailroute check`). */
export async function loadManifestsDir(
  dir: string,
  clock: () => Date = () => new Date(),
  limits: ManifestLimits = DEFAULT_MANIFEST_LIMITS,
): Promise<LoadOutcome> {
  let isDir: boolean;
  try {
    isDir = (await stat(dir)).isDirectory();
  } catch {
    isDir = false;
  }
  if (!isDir) return { ok: false, errors: [`${dir}: no such folder`] };
  const compiled = await loadAndCompile([dir], limits);
  if (compiled.errorLines.length > 0) {
    // a file that could not be read (EACCES, EMFILE) may be readable at the next poll with nothing else changed
    const transient = compiled.loaded.errors.some((e) => e.transient === true);
    return { ok: false, errors: compiled.errorLines, ...(transient ? { retry: true as const } : {}) };
  }
  const { secrets, warnings } = usableSecrets(compiled);
  return {
    ok: true,
    warnings: [...compiled.issueLines, ...warnings],
    snapshot: {
      table: compiled.result.table,
      revision: compiled.result.revision,
      secrets,
      loadedAt: clock(),
      origin: dir,
    },
  };
}

/** Heap of the compile worker: a table too big for it fails to load (the last good one stays) instead of the relay. */
const COMPILE_WORKER_HEAP_MB = 1024;

/**
 * loadManifestsDir in a worker thread (relay/sources/compile-worker.ts): parsing and compiling never block the SMTP
 * event loop, and the worker's heap is bounded (a table too big for it fails to load and the last good one stays).
 * One worker per source, started on the first load and kept (unref'd) for the next; restarted after it died.
 * loadedAt is stamped with the caller's clock.
 */
function createCompileWorker(): {
  load(dir: string, clock: () => Date, limits: ManifestLimits): Promise<LoadOutcome>;
  close(): Promise<void>;
} {
  let worker: Worker | undefined;
  let nextId = 0;
  const waiting = new Map<number, (o: LoadOutcome) => void>();
  /** retry: the worker died of something other than the size of the table, so the next one may well load it. */
  const failAll = (why: string, retry: boolean): void => {
    for (const done of waiting.values())
      done({ ok: false, errors: [why], ...(retry ? { retry: true as const } : {}) });
    waiting.clear();
  };
  const start = (): Worker => {
    const w = new Worker(new URL('./compile-worker.ts', import.meta.url), {
      resourceLimits: { maxOldGenerationSizeMb: COMPILE_WORKER_HEAP_MB },
    });
    w.unref();
    w.on('message', (m: { id: number; outcome: LoadOutcome }) => {
      const done = waiting.get(m.id);
      waiting.delete(m.id);
      done?.(m.outcome);
    });
    w.on('error', (err: Error) => {
      const oom = (err as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY';
      failAll(
        oom
          ? `compiling the manifests needs more than ${COMPILE_WORKER_HEAP_MB} MiB of memory`
          : `the compile worker failed: ${err.message}`,
        !oom,
      );
    });
    w.on('exit', (code) => {
      if (worker === w) worker = undefined;
      failAll(`the compile worker exited (${code})`, true);
    });
    return w;
  };
  return {
    load(dir, clock, limits) {
      worker ??= start();
      const id = nextId++;
      const w = worker;
      return new Promise((resolve) => {
        waiting.set(id, (o) => resolve(o.ok ? { ...o, snapshot: { ...o.snapshot, loadedAt: clock() } } : o));
        w.postMessage({ id, dir, limits });
      });
    },
    async close() {
      const w = worker;
      worker = undefined;
      if (w) await w.terminate();
    },
  };
}

export function createManifestsSource(opts: {
  dir: string;
  logger: Logger;
  clock?: () => Date;
  pollMs?: number;
  limits?: ManifestLimits;
}): RoutingSource {
  const compiler = createCompileWorker();
  const source = createPolledSource({
    kind: 'manifests',
    path: opts.dir,
    required: { flag: '--manifests', kind: 'directory' },
    load: () =>
      compiler.load(opts.dir, opts.clock ?? (() => new Date()), opts.limits ?? DEFAULT_MANIFEST_LIMITS),
    logger: opts.logger,
    ...(opts.clock ? { clock: opts.clock } : {}),
    ...(opts.pollMs !== undefined ? { pollMs: opts.pollMs } : {}),
  });
  return {
    kind: source.kind,
    start: () => source.start(),
    current: () => source.current(),
    lastError: () => source.lastError(),
    onChange: (listener) => source.onChange(listener),
    close: async () => {
      await source.close();
      await compiler.close();
    },
  };
}
