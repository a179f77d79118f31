// `npm run bench:node`: mail through the relay Service of the chart on the real single-node cluster
// (test/node/cluster.sh), with two relay pods and with one. Also times `helm install` to every pod Ready, and a
// policy change from `kubectl apply` to Programmed on every relay.
//
// Load: Postfix's smtp-source into the relay Service's ClusterIP (kube-proxy DNAT on the host), one new connection
// per message from --sessions parallel sessions, 4 KiB messages; destination: Postfix's smtp-sink on the node
// address. A run's figure is messages delivered at the sink per second, from the first connection to the last
// delivery. Bounded: --messages per run (default 3000), --rounds rounds of each replica count (default 2).
// Writes bench/results/<date>-node.json. Starts the cluster when it is not running and removes it afterwards.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Procs } from '../relay/procs.ts';
import { Sink } from '../relay/sink.ts';
import { freePorts } from '../relay/smtp-client.ts';
import { cpuModel } from '../machine.ts';
import {
  NODE_IP,
  REPO_ROOT,
  clusterScript,
  kubectl,
  kubectlOk,
  nodeAvailability,
} from '../../test/node/harness.ts';
import {
  MAIL_NS,
  NAMESPACE,
  RELAY_STS,
  applyAndWaitReady,
  installChart,
  relayServiceIp,
  uninstallChart,
  waitRollout,
  waitProgrammed,
} from '../../test/node/support.ts';
import { waitFor } from '../../test/support/wait.ts';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '3000' },
    sessions: { type: 'string', default: '20' },
    rounds: { type: 'string', default: '2' },
    size: { type: 'string', default: '4096' },
  },
});
const MESSAGES = Number(values.messages);
const SESSIONS = Number(values.sessions);
const ROUNDS = Number(values.rounds);
const SIZE = Number(values.size);
for (const [k, v] of Object.entries({ MESSAGES, SESSIONS, ROUNDS, SIZE }))
  if (!Number.isInteger(v) || v <= 0) throw new Error(`--${k.toLowerCase()} must be a positive integer`);
if (MESSAGES > 20_000) throw new Error('--messages: at most 20000 per run (the benchmark is bounded)');

const log = (msg: string): void => {
  process.stderr.write(`[bench:node ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
};

interface RunFigure {
  replicas: number;
  round: number;
  messages: number;
  seconds: number;
  perSecond: number;
  load1: number;
}

async function main(): Promise<void> {
  const availability = nodeAvailability();
  if (!availability.available) throw new Error(`the real node cannot run here: ${availability.reason}`);
  const procs = new Procs();
  const work = mkdtempSync(join(tmpdir(), 'mailroute-bench-node-'));
  let startedCluster = false;
  try {
    if ((await kubectl(['get', '--raw', '/readyz'], { timeoutMs: 5000 })).code !== 0) {
      log('starting the cluster (test/node/cluster.sh up)');
      await clusterScript('purge');
      await clusterScript('up');
      startedCluster = true;
    }
    await uninstallChart();
    const [sinkPort] = await freePorts(1);
    const sink = new Sink(sinkPort!, join(work, 'sink.log'), NODE_IP);
    sink.start(procs);

    log('helm install (default values, the local image, autoscaling off, 2 relays)');
    const installSeconds = await installChart([
      '--set',
      'relay.autoscaling.enabled=false',
      '--set',
      'relay.replicaCount=2',
    ]);
    log(`helm install -> every pod Ready: ${installSeconds.toFixed(1)} s`);
    const domain = (port: number): string => `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: bench, namespace: ${MAIL_NS}}
spec:
  domain: bench.test
  servers: [{name: sink, host: ${NODE_IP}, port: ${port}, tls: None}, {name: other, host: ${NODE_IP}, port: 9, tls: None}]
---
apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: bench, namespace: ${MAIL_NS}}
spec: {domainRef: {name: bench}, mode: Direct, primary: sink}
`;
    let started = Date.now();
    await applyAndWaitReady(domain(sinkPort!));
    const firstReadySeconds = (Date.now() - started) / 1000;
    // A change to an existing policy, applied, until both relays route by it.
    started = Date.now();
    await kubectlOk(['-n', MAIL_NS, 'apply', '-f', '-'], {
      input: domain(sinkPort!).replace('port: 9,', 'port: 10,'),
    });
    await waitProgrammed('maildomain', 'bench', 120_000);
    const changeSeconds = (Date.now() - started) / 1000;
    log(`kubectl apply of a change -> Programmed on both relays: ${changeSeconds.toFixed(1)} s`);

    const relayIp = await relayServiceIp();
    const runs: RunFigure[] = [];
    for (const replicas of [2, 1]) {
      await kubectlOk(['-n', NAMESPACE, 'scale', `statefulset/${RELAY_STS}`, `--replicas=${replicas}`]);
      await waitRollout();
      await waitFor(
        async () =>
          (await kubectlOk(['-n', NAMESPACE, 'get', 'endpointslices', '-l', `kubernetes.io/service-name=mr-mailroute-relay`, '-o', 'jsonpath={.items[*].endpoints[*].addresses[0]}'])) // prettier-ignore
            .trim()
            .split(/\s+/).length === replicas,
        { timeoutMs: 60_000, intervalMs: 200, what: `${replicas} Service endpoints` },
      );
      for (let round = 1; round <= ROUNDS; round++) {
        const before = sink.poll();
        const t0 = performance.now();
        execFileSync('smtp-source', ['-c', '-s', String(SESSIONS), '-m', String(MESSAGES), '-l', String(SIZE), '-f', 'sender@origin.example', '-t', `load${round}@bench.test`, `${relayIp}:25`], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 600_000 }); // prettier-ignore
        await waitFor(() => sink.poll() - before >= MESSAGES, {
          timeoutMs: 600_000,
          intervalMs: 100,
          what: `${MESSAGES} deliveries`,
        });
        const seconds = (performance.now() - t0) / 1000;
        const figure = {
          replicas,
          round,
          messages: MESSAGES,
          seconds,
          perSecond: MESSAGES / seconds,
          load1: loadavg()[0]!,
        };
        runs.push(figure);
        log(
          `${replicas} relay(s), round ${round}: ${MESSAGES} in ${seconds.toFixed(1)} s = ${figure.perSecond.toFixed(0)} msg/s (load ${figure.load1.toFixed(1)})`,
        );
      }
    }
    const result = {
      date: new Date().toISOString(),
      machine: { cpu: cpuModel(), cores: cpus().length, memGiB: Math.round(totalmem() / 2 ** 30) },
      options: { messages: MESSAGES, sessions: SESSIONS, rounds: ROUNDS, size: SIZE },
      installSeconds,
      firstPolicyReadySeconds: firstReadySeconds,
      changeProgrammedSeconds: changeSeconds,
      runs,
    };
    const dir = join(REPO_ROOT, 'bench', 'results');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${result.date.slice(0, 10)}-node.json`);
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    log(`wrote ${file}`);
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    procs.killAll();
    await uninstallChart().catch(() => undefined);
    if (startedCluster) await clusterScript('purge');
  }
}

await main();
