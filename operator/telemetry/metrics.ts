// The operator's metrics, named like controller-runtime's so existing dashboards and alerts work. Own registry.

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { QueueMetrics } from '../kube/workqueue.ts';

export interface OperatorMetrics {
  registry: Registry;
  reconcileTotal: Counter<'controller' | 'result'>;
  reconcileErrors: Counter<'controller'>;
  reconcileTime: Histogram<'controller'>;
  leaderStatus: Gauge<'name'>;
  routingRevision: Gauge<'revision'>;
  routingBytes: Gauge;
  relaysFresh: Gauge;
  informerRestarts: Counter<'informer' | 'reason'>;
  eventsDropped: Counter;
  queue(name: string): QueueMetrics;
  setRevision(revision: string): void;
}

const buckets = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1, 1.25, 1.5, 1.75, 2,
  2.5, 3, 3.5, 4, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
];

export function createOperatorMetrics(opts: { defaultMetrics?: boolean } = {}): OperatorMetrics {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const reconcileTotal = new Counter({
    name: 'controller_runtime_reconcile_total',
    help: 'Total number of reconciliations per controller',
    labelNames: ['controller', 'result'],
    registers: [registry],
  });
  const reconcileErrors = new Counter({
    name: 'controller_runtime_reconcile_errors_total',
    help: 'Total number of reconciliation errors per controller',
    labelNames: ['controller'],
    registers: [registry],
  });
  const reconcileTime = new Histogram({
    name: 'controller_runtime_reconcile_time_seconds',
    help: 'Length of time per reconciliation per controller',
    labelNames: ['controller'],
    buckets,
    registers: [registry],
  });
  const depth = new Gauge({
    name: 'workqueue_depth',
    help: 'Current depth of workqueue',
    labelNames: ['name', 'controller'],
    registers: [registry],
  });
  const adds = new Counter({
    name: 'workqueue_adds_total',
    help: 'Total number of adds handled by workqueue',
    labelNames: ['name', 'controller'],
    registers: [registry],
  });
  const retries = new Counter({
    name: 'workqueue_retries_total',
    help: 'Total number of retries handled by workqueue',
    labelNames: ['name', 'controller'],
    registers: [registry],
  });
  const qBuckets = [1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1, 10, 100, 1000];
  const queueDuration = new Histogram({
    name: 'workqueue_queue_duration_seconds',
    help: 'How long in seconds an item stays in workqueue before being requested',
    labelNames: ['name', 'controller'],
    buckets: qBuckets,
    registers: [registry],
  });
  const workDuration = new Histogram({
    name: 'workqueue_work_duration_seconds',
    help: 'How long in seconds processing an item from workqueue takes',
    labelNames: ['name', 'controller'],
    buckets: qBuckets,
    registers: [registry],
  });
  const leaderStatus = new Gauge({
    name: 'leader_election_master_status',
    help: 'Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master',
    labelNames: ['name'],
    registers: [registry],
  });
  const routingRevision = new Gauge({
    name: 'mailroute_operator_routing_revision_info',
    help: 'The routing revision the operator last applied (value 1)',
    labelNames: ['revision'],
    registers: [registry],
  });
  const routingBytes = new Gauge({
    name: 'mailroute_operator_routing_bytes',
    help: 'Size of the canonical routing JSON last applied',
    registers: [registry],
  });
  const relaysFresh = new Gauge({
    name: 'mailroute_operator_relays',
    help: 'Relays with a fresh heartbeat Lease',
    registers: [registry],
  });
  const informerRestarts = new Counter({
    name: 'mailroute_operator_informer_restarts_total',
    help: 'Informer restarts by the supervisor',
    labelNames: ['informer', 'reason'],
    registers: [registry],
  });
  const eventsDropped = new Counter({
    name: 'mailroute_operator_events_dropped_total',
    help: 'Events not written because of the event rate limit',
    registers: [registry],
  });
  let currentRevision: string | undefined;
  return {
    registry,
    reconcileTotal,
    reconcileErrors,
    reconcileTime,
    leaderStatus,
    routingRevision,
    routingBytes,
    relaysFresh,
    informerRestarts,
    eventsDropped,
    queue(name) {
      const l = { name, controller: name };
      return {
        depth: (n) => depth.set(l, n),
        added: () => adds.inc(l),
        retried: () => retries.inc(l),
        queued: (s) => queueDuration.observe(l, s),
        worked: (s) => workDuration.observe(l, s),
      };
    },
    setRevision(revision) {
      if (currentRevision === revision) return;
      if (currentRevision !== undefined) routingRevision.remove({ revision: currentRevision });
      currentRevision = revision;
      routingRevision.set({ revision }, 1);
    },
  };
}
