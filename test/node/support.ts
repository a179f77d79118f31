// What the real-node suites share: the chart release they install, the SMTP peers on the host that the relay pods
// deliver to, the manifests of the three delivery models pointing at those peers, and a load generator that
// records every reply it gets through the relay Service.
import nodemailer from 'nodemailer';
import { join } from 'node:path';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { freePort } from '../support/net.ts';
import { waitFor } from '../support/wait.ts';
import {
  HELM,
  IMAGE_REPOSITORY,
  NODE_IP,
  PACKAGE_VERSION,
  REPO_ROOT,
  helmOk,
  kubectl,
  kubectlOk,
  run,
} from './harness.ts';

export const RELEASE = 'mr';
export const NAMESPACE = 'mailroute-system';
export const CHART = join(REPO_ROOT, 'charts', 'mailroute');
export const RELAY_STS = `${RELEASE}-mailroute-relay`;
export const OPERATOR_DEPLOY = `${RELEASE}-mailroute-operator`;
/** Where the suites apply their MailDomains and DeliveryPolicies. */
export const MAIL_NS = 'mail';

/** The image values every install passes: the local image, never pulled. */
function imageArgs(tag = PACKAGE_VERSION): string[] {
  return [
    '--set',
    `image.repository=${IMAGE_REPOSITORY}`,
    '--set',
    `image.tag=${tag}`,
    '--set',
    'image.pullPolicy=Never',
  ];
}

/**
 * helm install of the chart with its default values, the local image, and the spool prepared for hostPath volumes
 * (the node's StorageClass ignores fsGroup, like any hostPath or local PersistentVolume). Returns the seconds from
 * the start of `helm install` to every pod of the release Ready.
 */
export async function installChart(extra: string[] = []): Promise<number> {
  const started = Date.now();
  await helmOk([
    'install', RELEASE, CHART, '-n', NAMESPACE, '--create-namespace',
    ...imageArgs(), '--set', 'relay.spool.volumePermissions.enabled=true', ...extra,
  ]); // prettier-ignore
  // With the chart's default HPA the StatefulSet starts at one replica until the HPA raises it to its minimum (2)
  // on its first sync; every install here ends with two relays.
  await waitFor(
    async () =>
      (await kubectl(['-n', NAMESPACE, 'get', 'statefulset', RELAY_STS, '-o', 'jsonpath={.spec.replicas} {.status.readyReplicas}'])).stdout.trim() === '2 2', // prettier-ignore
    { timeoutMs: 300_000, intervalMs: 500, what: 'two relays Ready' },
  );
  await waitRollout();
  return (Date.now() - started) / 1000;
}

/** Waits for the operator Deployment and the relay StatefulSet to be rolled out and every pod Ready. */
export async function waitRollout(timeout = '300s'): Promise<void> {
  await kubectlOk(
    ['-n', NAMESPACE, 'rollout', 'status', `deploy/${OPERATOR_DEPLOY}`, `--timeout=${timeout}`],
    { timeoutMs: 320_000 },
  );
  await kubectlOk(
    ['-n', NAMESPACE, 'rollout', 'status', `statefulset/${RELAY_STS}`, `--timeout=${timeout}`],
    { timeoutMs: 320_000 },
  );
  await kubectlOk(['-n', NAMESPACE, 'wait', '--for=condition=Ready', 'pod', '-l', `app.kubernetes.io/instance=${RELEASE}`, `--timeout=${timeout}`], { timeoutMs: 320_000 }); // prettier-ignore
}

/** helm uninstall, then the namespaces and their claims, so the next suite starts from an empty cluster. */
export async function uninstallChart(): Promise<void> {
  await run(HELM, ['uninstall', RELEASE, '-n', NAMESPACE, '--wait', '--timeout', '120s'], {
    timeoutMs: 150_000,
  });
  await kubectl(
    ['delete', 'namespace', NAMESPACE, MAIL_NS, '--ignore-not-found', '--wait=true', '--timeout=120s'],
    {
      timeoutMs: 150_000,
    },
  );
}

/** The ClusterIP of the relay's SMTP Service (the chart's LoadBalancer Service has one too). */
export async function relayServiceIp(): Promise<string> {
  const ip = (
    await kubectlOk([
      '-n',
      NAMESPACE,
      'get',
      'svc',
      `${RELEASE}-mailroute-relay`,
      '-o',
      'jsonpath={.spec.clusterIP}',
    ])
  ).trim();
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(ip)) throw new Error(`relay Service has no ClusterIP: "${ip}"`);
  return ip;
}

export async function relayPods(): Promise<string[]> {
  const out = await kubectlOk(['-n', NAMESPACE, 'get', 'pods', '-l', 'app.kubernetes.io/component=relay', '-o', 'jsonpath={.items[*].metadata.name}']); // prettier-ignore
  return out
    .split(/\s+/)
    .filter((s) => s !== '')
    .sort();
}

/** An SMTP peer on the node address, where pods reach it. */
export function hostPeer(
  name: string,
  behaviour: Parameters<typeof startSmtpPeer>[1] = {},
): Promise<SmtpPeer> {
  return freePort().then((port) => startSmtpPeer(name, behaviour, port, { host: NODE_IP }));
}

export interface ModelPeers {
  old: SmtpPeer;
  new: SmtpPeer;
}

/**
 * One MailDomain and DeliveryPolicy per delivery model, servers on the host peers:
 * direct.test: Direct to `new`; dual.test: Dual, old is primary, a copy to `new`;
 * split.test: Split, the accounts listed for `new` go there, every other recipient to `old`.
 */
export function modelManifests(peers: ModelPeers): string {
  const servers = `
  servers:
    - {name: old, host: ${NODE_IP}, port: ${peers.old.port}, tls: None}
    - {name: new, host: ${NODE_IP}, port: ${peers.new.port}, tls: None}`;
  const domain = (name: string, extra = ''): string => `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: ${name}, namespace: ${MAIL_NS}}
spec:
  domain: ${name}.test${servers}${extra}
---
`;
  return [
    domain('direct'),
    `apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: direct, namespace: ${MAIL_NS}}
spec: {domainRef: {name: direct}, mode: Direct, primary: new}
---
`,
    domain('dual'),
    `apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: dual, namespace: ${MAIL_NS}}
spec: {domainRef: {name: dual}, mode: Dual, primary: old, secondary: new, dual: {scope: All, bounces: Suppress}}
---
`,
    domain('split', `\n  accounts:\n    - {server: new, addresses: [alice@split.test]}`),
    `apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: split, namespace: ${MAIL_NS}}
spec: {domainRef: {name: split}, mode: Split, primary: new, secondary: old, split: {unknownRecipients: Secondary}}
`,
  ].join('');
}

/** Applies manifests in MAIL_NS (created if missing) and waits until every DeliveryPolicy is Ready. */
export async function applyAndWaitReady(yaml: string, timeout = '120s'): Promise<void> {
  await kubectl(['create', 'namespace', MAIL_NS]);
  await kubectlOk(['apply', '-f', '-'], { input: yaml });
  await kubectlOk(['-n', MAIL_NS, 'wait', '--for=condition=Ready', 'deliverypolicy', '--all', `--timeout=${timeout}`], { timeoutMs: 150_000 }); // prettier-ignore
}

export interface SendResult {
  code: number;
  response: string;
}

/** One message through the relay at host:port; the reply code is returned (never thrown). */
export async function send(
  host: string,
  to: string | string[],
  id: string,
  timeoutMs = 20_000,
  port = 25,
): Promise<SendResult> {
  const t = nodemailer.createTransport({
    host,
    port,
    ignoreTLS: true,
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
  });
  try {
    const info = (await t.sendMail({
      from: 'sender@origin.example',
      to,
      subject: id,
      messageId: `<${id}@node.test>`,
      text: `payload ${id}\n`,
    })) as { response: string };
    return { code: Number(info.response.slice(0, 3)), response: info.response };
  } catch (err) {
    const e = err as { responseCode?: number; response?: string; message?: string };
    return { code: e.responseCode ?? 0, response: e.response ?? e.message ?? String(err) };
  } finally {
    t.close();
  }
}

/** Sends until the relay answers 250 (pods still starting refuse connections), within a deadline. */
export async function sendAccepted(
  host: string,
  to: string | string[],
  id: string,
  timeoutMs = 60_000,
): Promise<void> {
  await waitFor(async () => (await send(host, to, id)).code === 250, {
    timeoutMs,
    intervalMs: 500,
    what: `250 for ${id}`,
  });
}

export interface Load {
  /** Message ids answered 250. */
  readonly acked: Set<string>;
  /** Every reply code seen (0: no SMTP reply, e.g. a refused or reset connection), with counts. */
  readonly codes: Map<number, number>;
  /** Replies that were neither 250 nor 4xx nor a connection failure, with their text. */
  readonly permanent: string[];
  /** Waits until n more messages than now are answered 250; fails at once when the load has ended (its cap). */
  accepted(n: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Sends messages one after another over `concurrency` sessions to `to` until stopped, recording what the relay
 * answered. Message ids are `${prefix}-<n>`. Bounded: at most `max` messages. perSecond: at most this many messages
 * a second in all (the sessions pace themselves), so that `max` lasts max / perSecond seconds however fast the relays
 * answer; undefined: as fast as they answer.
 */
export function startLoad(
  host: string,
  to: string[],
  prefix: string,
  concurrency = 4,
  max = 5000,
  perSecond?: number,
): Load {
  const acked = new Set<string>();
  const codes = new Map<number, number>();
  const permanent: string[] = [];
  let stopped = false;
  let seq = 0;
  // each session sends at most every `spacing` ms (a load generator's pacing, not a synchronization)
  const spacing = perSecond !== undefined && perSecond > 0 ? (concurrency * 1000) / perSecond : 0;
  const worker = async (): Promise<void> => {
    let next = performance.now();
    while (!stopped && seq < max) {
      if (spacing > 0) {
        const wait = next - performance.now();
        if (wait > 0) await new Promise((res) => setTimeout(res, wait));
        next = Math.max(next, performance.now()) + spacing;
      }
      const id = `${prefix}-${++seq}`;
      const r = await send(host, to, id, 10_000);
      codes.set(r.code, (codes.get(r.code) ?? 0) + 1);
      if (r.code === 250) acked.add(id);
      else if (r.code >= 500) permanent.push(`${id}: ${r.response}`);
      // A refused connection (a pod going away) returns at once: do not spin.
      if (r.code !== 250) await new Promise((res) => setTimeout(res, 100));
    }
  };
  let ended = false;
  const workers = Array.from({ length: concurrency }, () => worker());
  void Promise.all(workers).then(() => (ended = true));
  return {
    acked,
    codes,
    permanent,
    async accepted(n, timeoutMs = 60_000) {
      const want = acked.size + n;
      // waitFor retries a condition that throws until its deadline: the end of the load is a result, not a throw
      const outcome = await waitFor(() => (acked.size >= want ? 'accepted' : ended ? 'ended' : undefined), {
        timeoutMs,
        intervalMs: 200,
        what: `${n} more messages accepted (${want} in all)`,
      });
      if (outcome === 'ended' && acked.size < want)
        throw new Error(`the load ended after ${seq} messages (cap ${max}) before ${want} were accepted`);
    },
    async stop() {
      stopped = true;
      await Promise.all(workers);
    },
  };
}

/** Message-Id local parts (our ids) a peer received for a recipient. */
export function idsAt(peer: SmtpPeer, recipient?: string): Set<string> {
  const ids = new Set<string>();
  for (const m of recipient === undefined ? peer.messages : peer.for(recipient)) {
    const id = /^Message-ID:\s*<([^@>]+)@node\.test>/im.exec(m.raw.toString('latin1'))?.[1];
    if (id !== undefined) ids.add(id);
  }
  return ids;
}

/** Waits until every id in `ids` reached the peer (for `recipient`), naming what is missing on timeout. */
export async function waitDelivered(
  peer: SmtpPeer,
  ids: Iterable<string>,
  recipient?: string,
  timeoutMs = 180_000,
): Promise<void> {
  const want = [...ids];
  await waitFor(
    () => {
      const got = idsAt(peer, recipient);
      return want.every((id) => got.has(id));
    },
    {
      timeoutMs,
      intervalMs: 250,
      what: `delivery at ${peer.name}: missing ${want
        .filter((id) => !idsAt(peer, recipient).has(id))
        .slice(0, 10)
        .join(', ')}`,
    },
  ).catch((err: unknown) => {
    const got = idsAt(peer, recipient);
    const missing = want.filter((id) => !got.has(id));
    throw new Error(
      `${(err as Error).message}; ${missing.length} of ${want.length} missing: ${missing.slice(0, 10).join(', ')}`,
    );
  });
}

/** Waits until the object in MAIL_NS is Programmed (every relay routes by it) at its current generation. */
export async function waitProgrammed(kind: string, name: string, timeoutMs = 180_000): Promise<void> {
  await waitFor(
    async () => {
      const o = JSON.parse(await kubectlOk(['-n', MAIL_NS, 'get', kind, name, '-o', 'json'])) as {
        metadata: { generation?: number };
        status?: { conditions?: { type: string; status: string; observedGeneration?: number }[] };
      };
      const c = o.status?.conditions?.find((x) => x.type === 'Programmed');
      return c?.status === 'True' && c.observedGeneration === o.metadata.generation;
    },
    { timeoutMs, intervalMs: 250, what: `${kind}/${name} Programmed on every relay` },
  );
}
