// The relay's HTTP endpoint: /metrics (its own prom-client Registry), /healthz (the process serves and its spool is not
// stuck: 503 with the reason otherwise, so that the liveness probe restarts it), /readyz
// (a routing table is loaded AND the spool is writable). Readiness checks are injected, so this stays small.
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';

export interface ReadinessCheck {
  name: string;
  /** Resolves to undefined when ready, or the reason it is not. */
  check(): Promise<string | undefined>;
}

export interface ReadyReport {
  ready: boolean;
  /** check name -> 'ok' or the reason it is not ready */
  checks: Record<string, string>;
}

/** Runs every readiness check; a check that throws counts as not ready. */
export async function evaluateReadiness(readiness: readonly ReadinessCheck[]): Promise<ReadyReport> {
  const results = await Promise.all(
    readiness.map(async (r) => ({
      name: r.name,
      why: await r.check().catch((e: unknown) => String(e)),
    })),
  );
  return {
    ready: results.every((r) => r.why === undefined),
    checks: Object.fromEntries(results.map((r) => [r.name, r.why ?? 'ok'])),
  };
}

export interface TelemetryServer {
  readonly server: Server;
  listen(port: number, host: string): Promise<{ port: number; host: string }>;
  close(): Promise<void>;
}

export function createTelemetryServer(deps: {
  /** A Registry, or anything that renders one (the cluster primary aggregates its workers'). */
  registry: Pick<Registry, 'metrics' | 'contentType'>;
  readiness: ReadinessCheck[];
  /** Replaces the readiness checks (the cluster primary asks its workers). */
  report?: () => Promise<ReadyReport>;
  /** Why the process should be restarted (e.g. a stuck spool), or undefined; /healthz answers 503 with it. */
  liveness?: () => Promise<string | undefined>;
  info?: () => object;
}): TelemetryServer {
  const server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0] ?? '/';
    const send = (code: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n');
    switch (url) {
      case '/metrics':
        deps.registry.metrics().then(
          (text) => send(200, text, deps.registry.contentType),
          (err: unknown) => send(500, `metrics: ${err instanceof Error ? err.message : String(err)}\n`),
        );
        return;
      case '/healthz':
        if (!deps.liveness) return send(200, 'ok\n');
        deps.liveness().then(
          (why) => (why === undefined ? send(200, 'ok\n') : send(503, `${why}\n`)),
          (err: unknown) => send(503, `${err instanceof Error ? err.message : String(err)}\n`),
        );
        return;
      case '/readyz':
        (deps.report ? deps.report() : evaluateReadiness(deps.readiness)).then(
          (report) => {
            const body = { ...report, ...(deps.info?.() ?? {}) };
            send(report.ready ? 200 : 503, `${JSON.stringify(body)}\n`, 'application/json');
          },
          (err: unknown) => send(500, `${String(err)}\n`),
        );
        return;
      default:
        return send(404, 'not found\n');
    }
  });
  return {
    server,
    listen(port, host) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.removeListener('error', reject);
          const a = server.address();
          resolve(typeof a === 'object' && a !== null ? { port: a.port, host: a.address } : { port, host });
        });
      });
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
