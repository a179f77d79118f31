// The relay's HTTP endpoint: /metrics (its own prom-client Registry), /healthz (the process serves and its spool is not
// stuck: 503 with the reason otherwise, so that the liveness probe restarts it), /readyz
// (a routing table is loaded AND the spool is writable). Readiness checks are injected; the server is the one the
// operator serves too (lib/telemetry-http.ts).
import type { Registry } from 'prom-client';
import {
  createTelemetryHttp,
  type TelemetryFraming,
  type TelemetryServer,
} from '../../lib/telemetry-http.ts';

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

/** The relay's framing: GET and HEAD only, never cached. */
const RELAY_FRAMING: TelemetryFraming = {
  methods: ['GET', 'HEAD'],
  textType: 'text/plain; charset=utf-8',
  headers: { 'cache-control': 'no-store' },
};

export function createTelemetryServer(deps: {
  /** A Registry, or anything that renders one (the cluster primary aggregates its workers'). */
  registry: Pick<Registry, 'metrics' | 'contentType'>;
  readiness: ReadinessCheck[];
  /** Replaces the readiness checks (the cluster primary asks its workers). */
  report?: () => Promise<ReadyReport>;
  /** Why the process should be restarted (e.g. a stuck spool), or undefined; /healthz answers 503 with it. */
  liveness?: () => Promise<string | undefined>;
  info?: () => object;
  /** An error of the listener once it listens (lib/telemetry-http.ts): logged, never fatal. */
  onError?: (err: Error) => void;
}): TelemetryServer {
  return createTelemetryHttp({
    registry: deps.registry,
    readiness: async () => {
      const report = await (deps.report ? deps.report() : evaluateReadiness(deps.readiness));
      return { ...report, ...(deps.info?.() ?? {}), ready: report.ready };
    },
    ...(deps.liveness ? { liveness: deps.liveness } : {}),
    ...(deps.onError ? { onError: deps.onError } : {}),
    framing: RELAY_FRAMING,
  });
}
