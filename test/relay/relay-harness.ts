// Test support for end-to-end relay suites: an in-process relay (runRelay) on free loopback ports with a temp
// manifests folder and spool, and a spawned relay child (node bin/mailroute.js relay ...) for kill -9, SIGTERM and
// memory tests. Ports are 0: the child's actual ports are read from its "relay started" log line.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import type { SendMailOptions } from 'nodemailer';
import { pino } from 'pino';
import { expect } from 'vitest';
import type { MessageView } from '../../relay/admin/view.ts';
import { parseRelayConfig } from '../../relay/config.ts';
import { runRelay, type RelayDeps, type RelayHandle } from '../../relay/relay.ts';
import type { RelayMetrics } from '../../relay/telemetry/metrics.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';

export const ROOT = resolve(import.meta.dirname, '../..');
export const NODE = join(ROOT, 'node_modules/.bin/node');

/** The SMTP, HTTP and admin listeners of a test relay: loopback, port 0 (the ports taken are read back). */
export const LOOPBACK_LISTENERS = [
  '--listen',
  '127.0.0.1:0',
  '--http',
  '127.0.0.1:0',
  '--admin',
  '127.0.0.1:0',
];

export async function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `mailroute-${prefix}-`));
}

export async function writeManifests(dir: string, files: Record<string, string>): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
}

export interface InProcessRelay {
  relay: RelayHandle;
  dir: string;
  manifests: string;
  spoolDir: string;
  close(): Promise<void>;
}

export async function startRelay(
  files: Record<string, string>,
  flags: string[] = [],
  deps: RelayDeps = {},
): Promise<InProcessRelay> {
  const dir = await tempDir('relay');
  const manifests = join(dir, 'manifests');
  const spoolDir = join(dir, 'spool');
  await writeManifests(manifests, files);
  const relay = await runRelayIn(dir, flags, deps);
  return {
    relay,
    dir,
    manifests,
    spoolDir,
    async close() {
      await relay.shutdown('test');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Two in-process relays with the same manifests, for the drain suites: A drains to B (--peers) on shutdown, B does not
 * drain. Each one's close goes into `closers` as soon as it has started.
 */
export async function startDrainPair(
  files: Record<string, string>,
  closers: (() => Promise<void>)[],
): Promise<{ a: InProcessRelay; b: InProcessRelay }> {
  // B takes hand-offs only from the addresses its --peers resolve to (relay/inbound/peer-trust.ts): A's, 127.0.0.1.
  const b = await startRelay(files, ['--peers', '127.0.0.1:2525', '--drain-on-shutdown', 'false']);
  closers.push(() => b.close());
  const a = await startRelay(files, [
    '--peers',
    `127.0.0.1:${b.relay.smtp.port}`,
    '--drain-on-shutdown',
    'true',
  ]);
  closers.push(() => a.close());
  return { a, b };
}

/**
 * An in-process relay on `dir`'s manifests folder and spool (kept when it shuts down: a second one may start on
 * them), with startRelay's test flags (hostname relay.test, --retry-schedule 1s, a 2 s shutdown), then `flags`.
 */
export async function runRelayIn(
  dir: string,
  flags: string[] = [],
  deps: RelayDeps = {},
): Promise<RelayHandle> {
  const parsed = parseRelayConfig(
    loopbackRelayArgs(dir, [
      '--hostname',
      'relay.test',
      '--retry-schedule',
      '1s',
      '--shutdown-timeout',
      '2s',
      ...flags,
    ]),
    {
      // test/support/dns-guard.ts: the relay's lookups go to a closed loopback port unless a test names its servers
      MAILROUTE_DNS_SERVERS: process.env.MAILROUTE_DNS_SERVERS,
    },
  );
  if (parsed.ok !== true) throw new Error(`bad test config: ${parsed.ok === false ? parsed.error : 'help'}`);
  return runRelay(parsed.config, {
    logger: pino({ level: 'silent' }),
    sourcePollMs: 200,
    ...deps,
  });
}

export async function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

/** The queue id in a relay's "250 ... queued as ID" reply to DATA (asserted to be there). */
export function queuedId(reply: string): string {
  const id = /queued as ([0-9a-z]{16})/.exec(reply)?.[1];
  expect(id, reply).toBeDefined();
  return id!;
}

/** The admin API's view of queued message `id` (GET /queue/ID); undefined when it is not in the queue. */
export async function queuedView(r: InProcessRelay, id: string): Promise<MessageView | undefined> {
  const res = await httpGet(r.relay.admin.port, `/queue/${id}`);
  return res.status === 200 ? (JSON.parse(res.body) as MessageView) : undefined;
}

export interface RelayChild {
  proc: ChildProcess;
  pid: number;
  smtpPort: number;
  httpPort: number;
  logs: string[];
  exited: Promise<number | null>;
  kill(signal: NodeJS.Signals): void;
}

/** Spawns `node bin/mailroute.js relay ARGS` and waits for its "relay started" line. */
/** `wrapper`: a command the relay runs under (e.g. prlimit with its options), its program first. */
export async function spawnRelay(
  args: string[],
  env: Record<string, string> = {},
  wrapper: string[] = [],
): Promise<RelayChild> {
  const command = [...wrapper, NODE, join(ROOT, 'bin/mailroute.js'), 'relay', ...args];
  const proc = spawn(command[0] ?? NODE, command.slice(1), {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  let started: { smtp: string; http: string } | undefined;
  let partial = '';
  proc.stdout?.on('data', (c: Buffer) => {
    partial += c.toString();
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      logs.push(line);
      if (line.includes('"relay started"')) started = JSON.parse(line) as { smtp: string; http: string };
    }
  });
  proc.stderr?.on('data', (c: Buffer) => logs.push(c.toString()));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  // a relay that exits before it started fails the wait at once, with its output (waitFor alone waited out its 15 s:
  // it retries a condition that throws); once all its output is read ('close'), never after it started
  const endedEarly = new Promise<never>((_, reject) =>
    proc.on('close', (code) => {
      if (started === undefined)
        reject(new Error(`relay exited (${code}) before it started:\n${logs.join('\n')}`));
    }),
  );
  const s = await Promise.race([
    waitFor(() => started, { timeoutMs: 15_000, what: 'the relay child to start' }),
    endedEarly,
  ]).catch((err: unknown) => {
    proc.kill('SIGKILL'); // never leave a child that did not start (it would outlive the test run)
    throw err;
  });
  const port = (hp: string): number => Number(hp.slice(hp.lastIndexOf(':') + 1));
  return {
    proc,
    pid: proc.pid ?? 0,
    smtpPort: port(s.smtp),
    httpPort: port(s.http),
    logs,
    exited,
    kill: (signal) => proc.kill(signal),
  };
}

/** The value of a metric line (first match) from /metrics text; undefined when absent. */
export function metricValue(text: string, name: string, labels = ''): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    if (line.startsWith(`${name}${labels}`) || (labels === '' && line.startsWith(`${name} `))) {
      return Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return undefined;
}

/**
 * A MailDomain for `domain` (object name: the domain with dots as dashes) with `servers` (each the inside of one
 * flow map, e.g. "name: old, host: 127.0.0.1, port: 25, tls: None") and `extraDomain` (more spec lines), and its
 * DeliveryPolicy: `policy` holds the spec lines after domainRef.
 */
export function domainManifests(o: {
  domain: string;
  servers: string[];
  policy: string;
  extraDomain?: string;
  policyName?: string;
}): string {
  const name = o.domain.replaceAll('.', '-');
  return `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: ${name}}
spec:
  domain: ${o.domain}
  servers:
${o.servers.map((server) => `    - {${server}}\n`).join('')}${o.extraDomain ?? ''}---
apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: ${o.policyName ?? name}}
spec:
  domainRef: {name: ${name}}
${o.policy}`;
}

/** Servers old (`primary`) and new (`secondary`) on 127.0.0.1, plain; Dual (scope All) unless `opts` say otherwise. */
export function dualDomain(
  domain: string,
  primary: number,
  secondary: number,
  opts: {
    mode?: string;
    scope?: string;
    extraPolicy?: string;
    extraDomain?: string;
    policyName?: string;
  } = {},
): string {
  const mode = opts.mode ?? 'Dual';
  return domainManifests({
    domain,
    servers: [
      `name: old, host: 127.0.0.1, port: ${primary}, tls: None`,
      `name: new, host: 127.0.0.1, port: ${secondary}, tls: None`,
    ],
    ...(opts.extraDomain !== undefined ? { extraDomain: opts.extraDomain } : {}),
    ...(opts.policyName !== undefined ? { policyName: opts.policyName } : {}),
    policy: `  mode: ${mode}
  primary: old
${mode === 'Direct' ? '' : '  secondary: new\n'}${mode === 'Dual' ? `  dual:\n    scope: ${opts.scope ?? 'All'}\n` : ''}${opts.extraPolicy ?? ''}`,
  });
}

/** The flags every test relay gets (startRelay's and spawned ones): its folder's manifests and spool, loopback port 0 for SMTP, HTTP and
 * admin, no held-back greeting and no copy shed for the host's free space; `extra` follows. */
export function loopbackRelayArgs(dir: string, extra: string[] = []): string[] {
  return [
    '--manifests',
    join(dir, 'manifests'),
    '--spool',
    join(dir, 'spool'),
    ...LOOPBACK_LISTENERS,
    '--greeting-delay',
    '0',
    // no copy is shed for the host's free space (a test machine's disk may be 90 % full); shed-copies.test.ts sets it
    '--shed-copies-below',
    '0',
    ...extra,
  ];
}

/** Two recording destinations and a temp folder whose manifests route `domain` to them (Dual, scope All). */
export async function dualDestinations(
  prefix: string,
  domain: string,
): Promise<{ primary: SmtpPeer; copy: SmtpPeer; dir: string }> {
  const primary = await startSmtpPeer('primary');
  const copy = await startSmtpPeer('copy');
  const dir = await tempDir(prefix);
  await writeManifests(join(dir, 'manifests'), { 'd.yaml': dualDomain(domain, primary.port, copy.port) });
  return { primary, copy, dir };
}

/**
 * Sends one message to 127.0.0.1:port over a fresh connection without TLS, as a client of the relay would, and
 * resolves with the relay's reply to the end of DATA ("250 2.0.0 queued as ..."); a refusal rejects.
 */
export async function submit(port: number, mail: SendMailOptions, timeoutMs = 10_000): Promise<string> {
  const t = nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    secure: false,
    ignoreTLS: true,
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
  });
  try {
    return ((await t.sendMail(mail)) as { response: string }).response;
  } finally {
    t.close();
  }
}

const runFile = promisify(execFile);

/** The reply to one RCPT TO from Python's smtplib (a client other than nodemailer), as "CODE TEXT". */
export async function rcptReply(port: number, to: string, from = 's@origin.test'): Promise<string> {
  const py = `
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', int(sys.argv[1]))
s.ehlo('py.test')
s.mail(sys.argv[2])
code, text = s.rcpt(sys.argv[3])
print(code, text.decode())
s.quit()
`;
  return (await runFile('python3', ['-c', py, String(port), from, to])).stdout.trim();
}

/** The routing revision a relay serves (its metric), or undefined before the first table. */
async function servedRevision(r: RelayHandle): Promise<string | undefined> {
  return /mailroute_routing_revision_info\{revision="([0-9a-f]{64})"\} 1/.exec(
    (await httpGet(r.http.port, '/metrics')).body,
  )?.[1];
}

/** Runs `change` (e.g. a manifest written or removed) and waits until the relay serves a new revision. */
export async function served(r: RelayHandle, change: () => Promise<void>): Promise<void> {
  const before = await servedRevision(r);
  await change();
  await waitFor(async () => (await servedRevision(r)) !== before, {
    what: 'the new table served',
    timeoutMs: 5_000,
  });
}

/** The message/delivery-status part of a DSN's text. */
export function deliveryStatus(raw: string): string {
  const start = raw.indexOf('Content-Type: message/delivery-status');
  return raw.slice(start, raw.indexOf('Content-Type: text/rfc822-headers', start));
}

/** mailroute_deliveries_total summed over the series with this result (and leg role, when given). */
export async function deliveryCount(
  metrics: Pick<RelayMetrics, 'deliveries'>,
  result: string,
  leg?: string,
): Promise<number> {
  return (await metrics.deliveries.get()).values
    .filter((v) => v.labels.result === result && (leg === undefined || v.labels.leg === leg))
    .reduce((a, v) => a + v.value, 0);
}
