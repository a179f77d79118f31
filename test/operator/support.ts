// Helpers for operator suites: run `mailroute operator` as a child process, simulate relays by their heartbeat
// Leases (a relay that follows mailroute-routing and reports the revision it serves), read conditions.

import { spawn, type ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { ControlPlane } from '../controlplane/harness.ts';
import { freePort } from '../support/net.ts';
import type { SmtpPeer } from '../support/smtp-peer.ts';
import { spawnRelay, submit, type RelayChild } from '../relay/relay-harness.ts';
import { REPO_ROOT } from '../controlplane/suite.ts';
import { createKubeRest, type KubeRest } from '../../operator/kube/rest.ts';
import { microTime } from '../../operator/kube/leader.ts';
import { readRouting, type ConfigMapLike } from '../../contract/routing-configmap.ts';
import { relayLeaseName, REVISION_ANNOTATION, RELAY_COMPONENT_LABELS } from '../../contract/relay-lease.ts';
import { PLURALS } from '../../operator/controllers/object-status.ts';
import type { Kind } from '../../routing/model.ts';

export const NODE = join(REPO_ROOT, 'node_modules', '.bin', 'node');
export const BIN = join(REPO_ROOT, 'bin', 'mailroute.js');

export interface OperatorProcess {
  proc: ChildProcess;
  identity: string;
  logs: () => string;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function startOperator(
  cp: ControlPlane,
  opts: { namespace: string; identity: string; args?: string[] },
): OperatorProcess {
  const proc = spawn(
    NODE,
    [
      BIN,
      'operator',
      '--kubeconfig',
      cp.kubeconfigPath,
      '--namespace',
      opts.namespace,
      '--http',
      '127.0.0.1:0',
      '--identity',
      opts.identity,
      // the cluster default denies loopback destinations (preflight); the test's SMTP peers are on 127.0.0.1
      '--allow-destinations',
      '127.0.0.0/8,::1',
      ...(opts.args ?? []),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], cwd: REPO_ROOT },
  );
  let out = '';
  proc.stdout?.setEncoding('utf8').on('data', (c: string) => (out += c));
  proc.stderr?.setEncoding('utf8').on('data', (c: string) => (out += c));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  process.once('exit', () => proc.kill('SIGKILL'));
  return {
    proc,
    identity: opts.identity,
    logs: () => out,
    exited,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

export interface Cond {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration?: number;
  lastTransitionTime?: string;
}

interface Obj {
  metadata: { generation?: number; resourceVersion?: string; uid?: string };
  status?: { observedGeneration?: number; conditions?: Cond[] };
}

export async function getObject(
  rest: KubeRest,
  kind: Kind,
  ns: string,
  name: string,
): Promise<Obj | undefined> {
  const r = await rest.request<Obj>(
    'GET',
    `/apis/mailroute.io/v1alpha1/namespaces/${ns}/${PLURALS[kind]}/${name}`,
  );
  return r.ok ? r.body : undefined;
}

export async function condition(
  rest: KubeRest,
  kind: Kind,
  ns: string,
  name: string,
  type: string,
): Promise<Cond | undefined> {
  const o = await getObject(rest, kind, ns, name);
  return o?.status?.conditions?.find((c) => c.type === type);
}

/** The revision the routing ConfigMap currently announces, and whether all of its shards are readable. */
export async function routingRevision(
  rest: KubeRest,
  namespace: string,
): Promise<{ revision: string; json: string } | undefined> {
  const read = await readRouting(async (name) => {
    const r = await rest.request<ConfigMapLike>('GET', `/api/v1/namespaces/${namespace}/configmaps/${name}`);
    return r.ok ? r.body : undefined;
  });
  return read?.ok === true ? { revision: read.revision, json: read.json } : undefined;
}

/** Creates or renews a relay heartbeat Lease (what a relay pod does every 10 s). */
export async function heartbeat(
  rest: KubeRest,
  namespace: string,
  pod: string,
  revision: string | undefined,
  renewTime = new Date(),
  /** More annotations, e.g. the parity report (contract/relay-parity.ts). */
  extra: Record<string, string> = {},
): Promise<void> {
  const name = relayLeaseName(pod);
  const path = `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`;
  const got = await rest.request<{ metadata: Record<string, unknown> }>('GET', `${path}/${name}`);
  const body = {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: {
      ...(got.ok ? got.body.metadata : {}),
      name,
      namespace,
      labels: { ...RELAY_COMPONENT_LABELS },
      annotations: { ...(revision === undefined ? {} : { [REVISION_ANNOTATION]: revision }), ...extra },
    },
    spec: { holderIdentity: pod, leaseDurationSeconds: 30, renewTime: microTime(renewTime.getTime()) },
  };
  const r = got.ok
    ? await rest.request('PUT', `${path}/${name}`, { body })
    : await rest.request('POST', path, { body });
  if (!r.ok) throw new Error(`heartbeat ${name}: ${r.status} ${r.message}`);
}

/**
 * Simulated relays: each follows mailroute-routing (assembling shards like a real relay) and reports the revision it
 * serves in its heartbeat Lease, checking every `pollMs`. Used where the real relay processes are not needed.
 */
export class SimulatedRelays {
  private readonly rest: KubeRest;
  private readonly namespace: string;
  readonly pods: string[];
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  served = new Map<string, string>();
  private readonly renewed = new Map<string, number>();
  paused = false;

  constructor(cp: ControlPlane, namespace: string, pods: string[]) {
    this.rest = createKubeRest(cp.kubeconfig);
    this.namespace = namespace;
    this.pods = pods;
  }

  start(pollMs = 100): void {
    const tick = async (): Promise<void> => {
      if (this.busy || this.paused) return;
      this.busy = true;
      try {
        const r = await routingRevision(this.rest, this.namespace);
        for (const pod of this.pods) {
          const next = r?.revision;
          const stale = Date.now() - (this.renewed.get(pod) ?? 0) > 10_000;
          if (next !== undefined && (next !== this.served.get(pod) || stale)) {
            await heartbeat(this.rest, this.namespace, pod, next);
            this.served.set(pod, next);
            this.renewed.set(pod, Date.now());
          }
        }
      } catch {
        // API server away (restart test): try again next tick
      } finally {
        this.busy = false;
      }
    };
    this.timer = setInterval(() => void tick(), pollMs);
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
  }
}

/**
 * A relay in cluster mode, as a pod of the chart runs it: routing from the operator's ConfigMap in `namespace`,
 * heartbeat Lease and credentials as `pod`, spooling under `dir`, on a free loopback SMTP port. `extra` follows.
 */
export async function spawnClusterRelay(o: {
  kubeconfigPath: string;
  namespace: string;
  pod: string;
  dir: string;
  hostname: string;
  extra?: string[];
}): Promise<RelayChild> {
  return spawnRelay(
    [
      '--configmap',
      `${o.namespace}/mailroute-routing`,
      // the cluster default denies loopback destinations; the test's SMTP peers are on 127.0.0.1
      '--allow-destinations',
      '127.0.0.0/8,::1',
      '--listen',
      `127.0.0.1:${await freePort()}`,
      '--http',
      '127.0.0.1:0',
      '--admin',
      '127.0.0.1:0',
      '--spool',
      join(o.dir, 'spool'),
      '--hostname',
      o.hostname,
      '--greeting-delay',
      '0',
      '--shutdown-timeout',
      '2s',
      ...(o.extra ?? []),
    ],
    { KUBECONFIG: o.kubeconfigPath, POD_NAME: o.pod, POD_NAMESPACE: o.namespace, POD_IP: '127.0.0.1' },
  );
}

/** Submits a message tagged `id` (its Subject, and Message-ID <id@test>) from sender@outside.example to `to`. */
export async function sendTagged(relay: RelayChild, to: string, id: string): Promise<void> {
  await submit(relay.smtpPort, {
    envelope: { from: 'sender@outside.example', to: [to] },
    raw: `From: sender@outside.example\r\nTo: ${to}\r\nSubject: ${id}\r\nMessage-ID: <${id}@test>\r\n\r\n${id}\r\n`,
  });
}

/** The messages `peer` received that sendTagged() tagged `id`. */
export function receivedTagged(peer: SmtpPeer, id: string): SmtpPeer['messages'] {
  return peer.messages.filter((m) => m.raw.toString().includes(`Message-ID: <${id}@test>`));
}

/**
 * The afterAll of a suite with real relay processes: each relay stopped (SIGTERM, waited for), then the operator, the
 * SMTP peers and the relays' folders. Parts that were never started (undefined, '') are passed over.
 */
export async function stopRelayRun(run: {
  relays: (RelayChild | undefined)[];
  op: OperatorProcess | undefined;
  peers: (SmtpPeer | undefined)[];
  dirs: string[];
}): Promise<void> {
  for (const relay of run.relays) {
    if (relay === undefined) continue;
    relay.kill('SIGTERM');
    await relay.exited;
  }
  await run.op?.stop();
  for (const peer of run.peers) await peer?.close();
  for (const dir of run.dirs) if (dir !== '') await rm(dir, { recursive: true, force: true });
}

/** spawnClusterRelay as the operator suites run it: the harness's own kubeconfig, host name POD.test, 1 s retries. */
export function spawnTestRelay(
  cp: ControlPlane,
  namespace: string,
  pod: string,
  dir: string,
  extra: string[] = ['--retry-schedule', '1s'],
): Promise<RelayChild> {
  return spawnClusterRelay({
    kubeconfigPath: cp.kubeconfigPath,
    namespace,
    pod,
    dir,
    hostname: `${pod}.test`,
    extra,
  });
}

/**
 * A tenant: ServiceAccount `editor` in `namespace`, allowed to create and change mailroute objects there and nothing
 * else (no Secrets, no status, no other namespace).
 */
export function tenantEditorObjects(namespace: string): object[] {
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'editor', namespace } },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'mailroute-editor', namespace },
      rules: [
        {
          apiGroups: ['mailroute.io'],
          resources: ['maildomains', 'deliverypolicies', 'testrecipients'],
          verbs: ['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'],
        },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'mailroute-editor', namespace },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'mailroute-editor' },
      subjects: [{ kind: 'ServiceAccount', name: 'editor', namespace }],
    },
  ];
}

/** example.com with servers legacy (2601) and zoho (2602), and the Dual policy `migration` from legacy to zoho. */
export const MIGRATION_DOMAIN = `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: example-com}
spec:
  domain: example.com
  servers:
  - {name: legacy, host: 127.0.0.1, port: 2601, tls: None}
  - {name: zoho, host: 127.0.0.1, port: 2602, tls: None}
`;
export const MIGRATION_POLICY = `apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: migration}
spec: {domainRef: {name: example-com}, mode: Dual, primary: legacy, secondary: zoho}
`;
