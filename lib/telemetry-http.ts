// The HTTP telemetry endpoint the relay and the operator both serve: /metrics (a prom-client Registry's text),
// /healthz (200 "ok", or 503 with why the process should be restarted) and /readyz (200 or 503 with a JSON report).
// What is ready, and what is alive, is injected; how the answers are framed differs by side (TelemetryFraming).
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { httpServerOptions, limitConnections } from './http-limits.ts';
import { listenOn } from './listen.ts';

/** How the answers are framed. */
export interface TelemetryFraming {
  /** The methods answered; any other gets 405. Undefined: every method is answered. */
  methods?: readonly string[];
  /** Content-Type of the plain-text answers. */
  textType: string;
  /** Headers sent with every answer besides Content-Type (e.g. cache-control). */
  headers?: Readonly<Record<string, string>>;
}

export interface TelemetryServer {
  readonly server: Server;
  listen(port: number, host: string): Promise<{ port: number; host: string }>;
  /** Closes the listener and every open connection. */
  close(): Promise<void>;
}

export function createTelemetryHttp(deps: {
  /** A Registry, or anything that renders one (the relay's cluster primary aggregates its workers'). */
  registry: Pick<Registry, 'metrics' | 'contentType'>;
  /** /readyz: the report, sent as JSON with 200 when `ready`, 503 otherwise; a rejection answers 500. */
  readiness: () => Promise<{ ready: boolean }>;
  /** Why the process should be restarted, or undefined; /healthz answers 503 with it. Absent: always 200. */
  liveness?: () => Promise<string | undefined>;
  framing: TelemetryFraming;
  /**
   * An error of the listener once it listens: an accept that fails for want of a descriptor (EMFILE, ENFILE) when a
   * flood holds them all. Reported here, never fatal (an 'error' event without a listener would end the process).
   */
  onError?: (err: Error) => void;
}): TelemetryServer {
  const { framing } = deps;
  const server = createServer(httpServerOptions(), (req, res) => {
    const url = (req.url ?? '/').split('?')[0] ?? '/';
    const send = (code: number, body: string, type = framing.textType): void => {
      res.writeHead(code, { 'content-type': type, ...framing.headers });
      res.end(body);
    };
    if (framing.methods !== undefined && !framing.methods.includes(req.method ?? ''))
      return send(405, 'method not allowed\n');
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
        deps.readiness().then(
          (report) => send(report.ready ? 200 : 503, `${JSON.stringify(report)}\n`, 'application/json'),
          (err: unknown) => send(500, `${String(err)}\n`),
        );
        return;
      default:
        return send(404, 'not found\n');
    }
  });
  limitConnections(server);
  return {
    server,
    listen: (port, host) => listenOn(server, port, host, (err) => deps.onError?.(err)),
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
