// `mailroute relay --workers N`: N relay processes (node:cluster) sharing the SMTP port, shared-nothing otherwise.
//
// Exports (called by cli/commands/relay.ts):
//   runRelayProcess(config): Promise<number>   runs until SIGTERM/SIGINT; the exit code
//
// Why: one Node process runs smtp-server, the spool and nodemailer on one core (docs/perf.md). With N workers every
// worker is a whole relay (runRelay) with its own spool folder (relay/spool/adopt.ts: worker 0 = the spool root,
// worker i = <spool>/w<i>) and its own delivery engine and outbound pools; connection limits inbound and outbound are
// split between the workers so the totals stay what the flags and the routing table say.
//
// The primary process accepts no mail. It:
//   - adopts the queues of worker folders a previous run with more workers left behind, before forking;
//   - forks the workers (cluster round-robin hands each new SMTP connection to the next worker), restarts one that
//     dies, and on SIGTERM/SIGINT tells every worker to shut down gracefully (each drains its sessions and leaves its
//     queue spooled) and waits for them;
//   - serves --http: /metrics aggregated over the workers (prom-client AggregatorRegistry), /readyz ready when every
//     worker is, and --admin: the queue API over all the workers' spools (relay/admin/server.ts with a fan-out view).
// With --workers 1 there is no primary: the process is the relay, as before.
import cluster, { type Worker } from 'node:cluster';
import type { Logger } from 'pino';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { RelayConfig } from './config.ts';
import { startAdminServer, type AdminServer } from './admin/server.ts';
import { adminTokenPath } from './admin/token.ts';
import type { DeliveryEngine, DeliveryStats } from './delivery/engine.ts';
import type { RerouteResult } from './delivery/reroute.ts';
import type { RelayHandle } from './relay.ts';
import { adoptOrphanFolders, workerSpoolDir } from './spool/adopt.ts';
import { lockSpool } from './spool/lock.ts';
import { explainUnwritable } from './spool/writable.ts';
import type { LoadResult } from './spool/types.ts';
import { createTelemetryServer, type ReadyReport } from './telemetry/http.ts';
import { safeDelay } from '../routing/timer.ts';
import { createLogger } from '../lib/logger.ts';

/** Calls the primary makes to a worker. */
type WorkerCall =
  | { op: 'list' }
  | { op: 'load'; id: string }
  | { op: 'remove'; id: string }
  | { op: 'flush' }
  | { op: 'reroute'; id: string }
  | { op: 'rerouteAll' }
  | { op: 'stats' }
  | { op: 'ready' }
  | { op: 'live' }
  | { op: 'shutdown' };

type ToWorker = { mr: 'req'; rid: number; call: WorkerCall };
type FromWorker =
  | { mr: 'res'; rid: number; ok: true; value: unknown }
  | { mr: 'res'; rid: number; ok: false; error: string }
  | { mr: 'up'; index: number; smtp: { host: string; port: number }; queued: number }
  | { mr: 'fatal'; index: number; error: string };

const INDEX_ENV = 'MAILROUTE_WORKER_INDEX';
const RPC_TIMEOUT_MS = 10_000;

function isFromWorker(m: unknown): m is FromWorker {
  return typeof m === 'object' && m !== null && 'mr' in m;
}

/** Merges the workers' queue statistics into one view. */
export function mergeStats(all: readonly DeliveryStats[]): DeliveryStats {
  return {
    messages: all.reduce((n, s) => n + s.messages, 0),
    pending: all.reduce((n, s) => n + s.pending, 0),
    deferred: all.reduce((n, s) => n + s.deferred, 0),
    unroutableLegs: all.reduce((n, s) => n + s.unroutableLegs, 0),
    jobs: all.reduce((n, s) => n + s.jobs, 0),
    oldestAgeSeconds: all.reduce((n, s) => Math.max(n, s.oldestAgeSeconds), 0),
    recovering: all.some((s) => s.recovering),
    stopped: all.some((s) => s.stopped),
  };
}

/** Merges the workers' readiness: a check fails when it fails in any worker; a missing worker is not ready. */
export function mergeReadiness(reports: readonly (ReadyReport | string)[]): ReadyReport {
  const checks: Record<string, string> = {};
  let ready = reports.length > 0;
  reports.forEach((r, i) => {
    if (typeof r === 'string') {
      ready = false;
      checks[`worker${i}`] = r;
      return;
    }
    if (!r.ready) ready = false;
    for (const [name, why] of Object.entries(r.checks)) {
      if (why === 'ok') checks[name] ??= 'ok';
      else checks[name] = checks[name] === undefined || checks[name] === 'ok' ? why : checks[name];
    }
  });
  return { ready, checks };
}

/** The first successful load among the workers (ids are unique), else a corrupt result, else missing. */
export function mergeLoads(results: readonly LoadResult[]): LoadResult {
  return (
    results.find((r) => r.ok) ??
    results.find((r) => !r.ok && r.reason === 'corrupt') ?? {
      ok: false,
      reason: 'missing',
      error: 'no such message',
    }
  );
}

export async function runRelayProcess(config: Readonly<RelayConfig>): Promise<number> {
  const workers = config.workers ?? 1;
  if (cluster.isWorker) return runWorker(config, workers);
  const logger = createLogger({
    level: config.logLevel,
    format: config.logFormat,
    base: { component: 'relay' },
  });
  // One relay process per spool folder (relay/spool/lock.ts), before anything in it is touched.
  const lock = await explainUnwritable(config.spoolDir, () =>
    lockSpool(config.spoolDir, {
      onWait: (owner) =>
        logger.warn(
          { spool: config.spoolDir, owner },
          'relay: the spool is locked by another relay; waiting',
        ),
    }),
  ).catch((err: unknown) => {
    throw new Error(`--spool ${config.spoolDir}: ${err instanceof Error ? err.message : String(err)}`);
  });
  if (lock.unguarded !== undefined) {
    logger.warn(
      { spool: config.spoolDir, reason: lock.unguarded },
      'relay: the spool file system gives no lock; a second relay started on this spool would not be stopped',
    );
  }
  try {
    await adoptOrphanFolders(config.spoolDir, workers, logger).catch((err: unknown) => {
      throw new Error(`--spool ${config.spoolDir}: ${err instanceof Error ? err.message : String(err)}`);
    });
    if (workers <= 1) {
      const { runRelay } = await import('./relay.ts');
      const handle = await runRelay(config, { handleSignals: true, logger });
      await handle.closed;
      return 0;
    }
    return await runPrimary(config, workers, logger);
  } finally {
    lock.release();
  }
}

// ---------------------------------------------------------------- worker

async function runWorker(config: Readonly<RelayConfig>, count: number): Promise<number> {
  const index = Number(process.env[INDEX_ENV] ?? '0');
  const send = (m: FromWorker): void => {
    if (process.connected) process.send?.(m);
  };
  const logger = createLogger({
    level: config.logLevel,
    format: config.logFormat,
    base: { component: 'relay', worker: index },
  });
  let handle: RelayHandle;
  try {
    // Imported here: the primary never loads the relay itself, so it starts (and forks) sooner.
    const { runRelay } = await import('./relay.ts');
    handle = await runRelay(
      { ...config, spoolDir: workerSpoolDir(config.spoolDir, index) },
      { handleSignals: true, logger, worker: { index, count } },
    );
  } catch (err) {
    send({ mr: 'fatal', index, error: err instanceof Error ? err.message : String(err) });
    throw err;
  }
  // prom-client answers the primary's metric requests from this registry.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([handle.metrics.registry]);

  const answer = async (call: WorkerCall): Promise<unknown> => {
    switch (call.op) {
      case 'list':
        return handle.spool.list();
      case 'load':
        return handle.spool.load(call.id);
      case 'remove':
        return handle.delivery.remove(call.id);
      case 'flush':
        handle.delivery.flush();
        return true;
      case 'reroute':
        // The state is not sent back: the admin API answers with what changed.
        return handle.delivery
          .reroute(call.id)
          .then((r) => r && { changed: r.changed, unchanged: r.unchanged });
      case 'rerouteAll':
        return handle.delivery.rerouteAll();
      case 'stats':
        return handle.delivery.stats();
      case 'ready':
        return handle.readiness();
      case 'live':
        return handle.spool.stalled() ?? null;
      case 'shutdown':
        void handle.shutdown('primary');
        return true;
    }
  };
  process.on('message', (m: unknown) => {
    if (typeof m !== 'object' || m === null || !('mr' in m) || m.mr !== 'req') return;
    const req = m as ToWorker;
    answer(req.call).then(
      (value) => send({ mr: 'res', rid: req.rid, ok: true, value }),
      (err: unknown) =>
        send({ mr: 'res', rid: req.rid, ok: false, error: err instanceof Error ? err.message : String(err) }),
    );
  });
  send({ mr: 'up', index, smtp: handle.smtp, queued: handle.spool.recovery.messages });
  await handle.closed;
  // Logs are written synchronously (pino's default destination); nothing is left to flush.
  process.exit(0);
}

// ---------------------------------------------------------------- primary

interface Slot {
  index: number;
  worker: Worker | undefined;
  up: boolean;
  restarts: number;
}

async function runPrimary(config: Readonly<RelayConfig>, count: number, logger: Logger): Promise<number> {
  const slots: Slot[] = Array.from({ length: count }, (_, index) => ({
    index,
    worker: undefined,
    up: false,
    restarts: 0,
  }));
  let stopping = false;
  let rid = 0;
  const calls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let smtp: { host: string; port: number } | undefined;
  let queued = 0;
  /** "relay started" was logged: later 'up' messages are restarts. */
  let announced = false;
  let onStartEvent: (() => void) | undefined;
  let startError: string | undefined;

  const fork = (slot: Slot): void => {
    const w = cluster.fork({
      [INDEX_ENV]: String(slot.index),
      // Every fs call goes through libuv's pool: 4 threads queue the spool's fsyncs (docs/perf.md).
      UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '16',
    });
    slot.worker = w;
    slot.up = false;
    w.on('message', (m: unknown) => {
      if (!isFromWorker(m)) return;
      switch (m.mr) {
        case 'up':
          slot.up = true;
          slot.restarts = 0;
          if (!announced) queued += m.queued;
          smtp ??= m.smtp;
          onStartEvent?.();
          return;
        case 'fatal':
          startError ??= `worker ${m.index}: ${m.error}`;
          onStartEvent?.();
          return;
        case 'res': {
          const c = calls.get(m.rid);
          if (!c) return;
          calls.delete(m.rid);
          if (m.ok) c.resolve(m.value);
          else c.reject(new Error(m.error));
          return;
        }
      }
    });
    w.on('exit', (code, signal) => {
      slot.up = false;
      if (slot.worker === w) slot.worker = undefined;
      if (stopping) return;
      if (smtp === undefined) {
        startError ??= `worker ${slot.index} exited before it started (code ${code}, signal ${signal})`;
        onStartEvent?.();
        return;
      }
      const delay = Math.min(30_000, 500 * 2 ** slot.restarts);
      slot.restarts++;
      logger.error(
        { worker: slot.index, code, signal, restartInMs: delay },
        'relay: worker exited; restarting',
      );
      setTimeout(() => {
        if (!stopping) fork(slot);
      }, delay).unref();
    });
  };

  const call = (slot: Slot, c: WorkerCall): Promise<unknown> => {
    const w = slot.worker;
    if (!w || !slot.up || !w.isConnected())
      return Promise.reject(new Error(`worker ${slot.index} is not running`));
    const id = ++rid;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        calls.delete(id);
        reject(new Error(`worker ${slot.index}: no answer to ${c.op} within ${RPC_TIMEOUT_MS} ms`));
      }, RPC_TIMEOUT_MS);
      calls.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      const msg: ToWorker = { mr: 'req', rid: id, call: c };
      w.send(msg);
    });
  };
  const callAll = <T>(c: WorkerCall): Promise<T[]> => Promise.all(slots.map((s) => call(s, c) as Promise<T>));

  const aggregator = new AggregatorRegistry();
  const telemetry = createTelemetryServer({
    registry: {
      metrics: () => aggregator.clusterMetrics(),
      contentType: aggregator.contentType as Registry['contentType'],
    },
    readiness: [],
    report: async () => {
      // While stopping, don't ask: a worker draining its sessions may answer IPC late (seen under load).
      if (stopping) return { ready: false, checks: { accepting: 'shutting down' } };
      const reports = await Promise.all(
        slots.map((s) =>
          (call(s, { op: 'ready' }) as Promise<ReadyReport>).catch((e: unknown) =>
            e instanceof Error ? e.message : String(e),
          ),
        ),
      );
      return mergeReadiness(reports);
    },
    // A worker whose spool is stuck (or that does not answer) fails /healthz: the pod is restarted.
    liveness: async () => {
      if (stopping) return undefined;
      const why = await Promise.all(
        slots.map((s) =>
          (call(s, { op: 'live' }) as Promise<string | null>).then(
            (w) => (w === null ? undefined : `worker ${s.index}: ${w}`),
            // a worker being restarted by this primary is not a reason to restart the pod
            (e: unknown) =>
              s.up ? `worker ${s.index}: ${e instanceof Error ? e.message : String(e)}` : undefined,
          ),
        ),
      );
      const bad = why.filter((w) => w !== undefined);
      return bad.length > 0 ? bad.join('; ') : undefined;
    },
    onError: (err) => logger.warn({ err }, 'telemetry: listener error'),
  });
  // --http and --admin are bound before any worker forks (and so before the SMTP port accepts anything): a port
  // that is taken ends the start with nothing left running.
  let admin: AdminServer | undefined;
  let httpAddr: { host: string; port: number } | undefined;
  const closeListeners = async (): Promise<void> => {
    await admin?.close();
    if (httpAddr !== undefined) await telemetry.close();
  };
  try {
    httpAddr = await telemetry.listen(config.http.port, config.http.host).catch((err: unknown) => {
      throw new Error(
        `--http ${config.http.host}:${config.http.port}: ${err instanceof Error ? err.message : String(err)}`,
      );
    });
    admin = await startAdminServer({
      listen: config.admin,
      logger,
      tokenFile: adminTokenPath(config.spoolDir),
      spool: {
        list: async () => (await callAll<string[]>({ op: 'list' })).flat().sort(),
        load: async (id) => mergeLoads(await callAll<LoadResult>({ op: 'load', id })),
      },
      engine: {
        flush: () => {
          void callAll({ op: 'flush' }).catch((err: unknown) => logger.error({ err }, 'admin: flush failed'));
        },
        remove: async (id) => (await callAll<boolean>({ op: 'remove', id })).some(Boolean),
        reroute: async (id) =>
          (
            await callAll<Pick<RerouteResult, 'changed' | 'unchanged'> | undefined | null>({
              op: 'reroute',
              id,
            })
          ).find((r) => r !== undefined && r !== null) ?? undefined,
        rerouteAll: async () => {
          const all = await callAll<Awaited<ReturnType<DeliveryEngine['rerouteAll']>>>({ op: 'rerouteAll' });
          return {
            messages: all.reduce((n, r) => n + r.messages, 0),
            rerouted: all.reduce((n, r) => n + r.rerouted, 0),
            legs: all.reduce((n, r) => n + r.legs, 0),
            unchanged: all.reduce((n, r) => n + r.unchanged, 0),
          };
        },
        stats: async () => mergeStats(await callAll<DeliveryStats>({ op: 'stats' })),
      },
    }).catch((err: unknown) => {
      throw new Error(
        `--admin ${config.admin.host}:${config.admin.port}: ${err instanceof Error ? err.message : String(err)}`,
      );
    });
  } catch (err) {
    await closeListeners();
    process.stderr.write(`mailroute relay: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }

  for (const slot of slots) fork(slot);
  await new Promise<void>((resolve) => {
    onStartEvent = () => {
      if (startError !== undefined || slots.every((s) => s.up)) resolve();
    };
  });
  onStartEvent = undefined;
  if (startError !== undefined) {
    stopping = true;
    for (const s of slots) s.worker?.kill('SIGKILL');
    await closeListeners();
    process.stderr.write(`mailroute relay: ${startError}\n`);
    return 1;
  }

  logger.info(
    {
      smtp: `${smtp?.host ?? config.listen.host}:${smtp?.port ?? config.listen.port}`,
      http: `${httpAddr.host}:${httpAddr.port}`,
      admin: `${admin.address.host}:${admin.address.port}`,
      spool: config.spoolDir,
      queued,
      workers: count,
    },
    'relay started',
  );
  announced = true;

  const done = new Promise<void>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      const started = performance.now();
      logger.info({ reason: sig, workers: count }, 'relay: stopping workers');
      const exits = slots.map(
        (s) =>
          new Promise<void>((r) => {
            const w = s.worker;
            if (!w || w.isDead()) return r();
            w.once('exit', () => r());
            if (w.isConnected())
              w.send({ mr: 'req', rid: ++rid, call: { op: 'shutdown' } } satisfies ToWorker);
            else w.kill('SIGTERM');
          }),
      );
      // Each worker bounds its own shutdown (sessions, delivery stop, drain); this is the backstop.
      const backstop = setTimeout(
        () => {
          for (const s of slots) s.worker?.kill('SIGKILL');
        },
        safeDelay(config.shutdownTimeoutMs + config.drainTimeoutMs + 30_000),
      );
      void Promise.all(exits)
        .then(async () => {
          clearTimeout(backstop);
          await admin.close();
          await telemetry.close();
          logger.info({ reason: sig, ms: Math.round(performance.now() - started) }, 'relay: stopped');
        })
        .finally(resolve);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    // Passed on: each worker reads its TLS files again (relay/relay.ts); without a handler SIGHUP ended the primary.
    process.on('SIGHUP', () => {
      logger.info({ workers: slots.length }, 'SIGHUP: passed on to the workers');
      for (const s of slots) s.worker?.process.kill('SIGHUP');
    });
  });
  await done;
  return 0;
}
