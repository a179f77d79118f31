// Intake with and without smtp-server's held-back greeting (docs/relay.md "Greeting delay"). Runs the relay's
// inbound side in this process (real spool with fsync, no delivery) and Postfix's smtp-source against it: 20
// sessions, a new connection per message, 4 KiB messages. Usage: node bench/relay/intake-greeting.ts [messages] [always|zero|cached]
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createRouter } from '../../relay/inbound/router.ts';
import { createInbound } from '../../relay/inbound/server.ts';
import { createCalloutVerifier } from '../../relay/inbound/verify.ts';
import { loadManifestsDir } from '../../relay/sources/manifests.ts';
import { openSpool } from '../../relay/spool/spool.ts';
import { createRelayMetrics } from '../../relay/telemetry/metrics.ts';

const run = promisify(execFile);
const messages = Number(process.argv[2] ?? 2000);
const MANIFESTS = `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: bench}
spec:
  domain: bench.test
  servers: [{name: main, host: 127.0.0.1, port: 1, tls: None}]
---
apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: bench}
spec: {domainRef: {name: bench}, mode: Direct, primary: main}
`;

async function measure(label: string, greetingDelayMs: number, greetingPassTtlMs?: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'mailroute-intake-'));
  await mkdir(join(dir, 'm'));
  await writeFile(join(dir, 'm', 'bench.yaml'), MANIFESTS);
  const loaded = await loadManifestsDir(join(dir, 'm'));
  if (!loaded.ok) throw new Error(loaded.errors.join('\n'));
  const router = createRouter(loaded.snapshot.table, loaded.snapshot.revision);
  const logger = pino({ level: 'silent' });
  const spool = await openSpool({ dir: join(dir, 'spool'), logger });
  const inbound = createInbound({
    options: {
      hostname: 'relay.bench',
      maxMessageSize: 26214400,
      maxRecipients: 1000,
      maxConnections: 1000,
      maxConnectionsPerIp: 1000,
      idleTimeoutMs: 60_000,
      dataTimeoutMs: 600_000,
      bareLf: 'reject',
      greetingDelayMs,
      ...(greetingPassTtlMs !== undefined ? { greetingPassTtlMs } : {}),
    },
    router: () => router,
    spool,
    verifier: createCalloutVerifier({ heloName: 'relay.bench' }),
    metrics: createRelayMetrics(new Registry(), false),
    logger,
  });
  const { port } = await inbound.listen(0, '127.0.0.1');
  const t0 = process.hrtime.bigint();
  await run('/usr/sbin/smtp-source', [
    '-s',
    '20',
    '-m',
    String(messages),
    '-l',
    '4096',
    '-f',
    'a@origin.test',
    '-t',
    'u@bench.test',
    `127.0.0.1:${port}`,
  ]);
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const queued = (await spool.list()).length;
  await inbound.close(100);
  await rm(dir, { recursive: true, force: true });
  console.log(
    `${label.padEnd(60)} ${String(messages).padStart(6)} msgs  ${s.toFixed(2).padStart(6)} s  ${(messages / s).toFixed(0).padStart(6)} msg/s  (spooled ${queued})`,
  );
}

console.log(
  `smtp-source -s 20 -m ${messages} -l 4096, new connection per message; ${cpus().length} cores; node ${process.version}`,
);
// argv[3]: run one case only (always | zero | cached), e.g. under --cpu-prof
const only = process.argv[3];
if (only === undefined || only === 'always')
  await measure('greeting held back 100 ms on every connection', 100, 0);
if (only === undefined || only === 'zero') await measure('greeting delay 0', 0);
if (only === undefined || only === 'cached')
  await measure('100 ms for new addresses, passed addresses greeted at once', 100);
