// The mailroute side: manifests equivalent to the Postfix configuration (pure), and the relay process.
import { mkdirSync, writeFileSync, openSync, closeSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { BENCH_DOMAIN, COPY_DOMAIN, KNOWN_LOCAL, sourceRecipients, type DeliveryMode } from './workloads.ts';
import type { Procs, Tracked } from './procs.ts';

export interface MailrouteLayout {
  readonly root: string;
  readonly sinkA: number;
  readonly sinkB: number;
  readonly mode: DeliveryMode;
  /** Recipients per message of the workload (split: the accounts known on the primary). */
  readonly recipients: number;
}

/** The manifests folder content: one MailDomain (servers a = sink A, b = sink B) and one DeliveryPolicy. */
export function mailrouteManifests(l: MailrouteLayout): string {
  const server = (name: string, port: number): Record<string, unknown> => ({
    name,
    host: '127.0.0.1',
    port,
    tls: 'None',
    // Postfix's smtp_destination_concurrency_limit default.
    maxConnections: 20,
  });
  const domainSpec: Record<string, unknown> = {
    domain: BENCH_DOMAIN,
    servers: [server('a', l.sinkA), server('b', l.sinkB)],
  };
  if (l.mode === 'Split') {
    domainSpec['accounts'] = [
      { server: 'a', addresses: sourceRecipients(`${KNOWN_LOCAL}@${BENCH_DOMAIN}`, l.recipients) },
    ];
  }
  const policySpec: Record<string, unknown> = {
    domainRef: { name: 'bench-example' },
    mode: l.mode,
    primary: 'a',
  };
  switch (l.mode) {
    case 'Direct':
      break;
    case 'Dual':
      policySpec['secondary'] = 'b';
      policySpec['dual'] = { scope: 'All', copyRecipientDomain: COPY_DOMAIN, bounces: 'Suppress' };
      break;
    case 'Split':
      policySpec['secondary'] = 'b';
      policySpec['split'] = { unknownRecipients: 'Secondary' };
      break;
  }
  const docs = [
    {
      apiVersion: 'mailroute.io/v1alpha1',
      kind: 'MailDomain',
      metadata: { name: 'bench-example' },
      spec: domainSpec,
    },
    {
      apiVersion: 'mailroute.io/v1alpha1',
      kind: 'DeliveryPolicy',
      metadata: { name: 'bench' },
      spec: policySpec,
    },
  ];
  return docs.map((d) => stringify(d)).join('---\n');
}

export interface MailrouteStart {
  readonly repoRoot: string;
  readonly port: number;
  readonly httpPort: number;
  readonly adminPort: number;
  readonly extraArgs: readonly string[];
  readonly cpuProfDir: string | undefined;
  readonly nodeArgs: readonly string[];
  /** Run bench/relay/floor-relay.ts (the floor system) instead of `mailroute relay`, with the same flags. */
  readonly floor?: boolean;
}

export class MailrouteInstance {
  readonly layout: MailrouteLayout;
  private proc: Tracked | undefined;

  constructor(layout: MailrouteLayout) {
    this.layout = layout;
  }

  get logFile(): string {
    return join(this.layout.root, 'relay.log');
  }

  /** The argv of `node bin/mailroute.js relay ...` (without the node binary). */
  static argv(l: MailrouteLayout, s: MailrouteStart): string[] {
    const prof = s.cpuProfDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', resolve(s.cpuProfDir)];
    return [
      ...s.nodeArgs,
      ...prof,
      ...(s.floor === true
        ? [join(s.repoRoot, 'bench', 'relay', 'floor-relay.ts')]
        : [join(s.repoRoot, 'bin', 'mailroute.js'), 'relay']),
      '--manifests',
      join(l.root, 'manifests'),
      '--listen',
      `127.0.0.1:${s.port}`,
      '--http',
      `127.0.0.1:${s.httpPort}`,
      '--admin',
      `127.0.0.1:${s.adminPort}`,
      '--spool',
      join(l.root, 'spool'),
      '--hostname',
      'mailroute.bench.localhost',
      ...s.extraArgs,
    ];
  }

  start(procs: Procs, s: MailrouteStart): void {
    mkdirSync(join(this.layout.root, 'manifests'), { recursive: true });
    mkdirSync(join(this.layout.root, 'spool'), { recursive: true });
    writeFileSync(join(this.layout.root, 'manifests', 'bench.yaml'), mailrouteManifests(this.layout));
    const out = openSync(this.logFile, 'a');
    this.proc = procs.spawn(
      join(s.repoRoot, 'node_modules', '.bin', 'node'),
      MailrouteInstance.argv(this.layout, s),
      {
        stdio: ['ignore', out, out],
        cwd: s.repoRoot,
        name: 'mailroute',
      },
    );
    closeSync(out);
  }

  roots(): number[] {
    const pid = this.proc?.child.pid;
    return pid === undefined ? [] : [pid];
  }

  exited(): boolean {
    const c = this.proc?.child;
    return c === undefined || c.exitCode !== null || c.signalCode !== null;
  }

  logTail(chars = 2000): string {
    try {
      return readFileSync(this.logFile, 'utf8').slice(-chars);
    } catch {
      return '';
    }
  }

  /** SIGTERM (the relay drains and exits; --cpu-prof writes its profile then), SIGKILL after graceMs. */
  async stop(procs: Procs, graceMs = 15_000): Promise<void> {
    if (this.proc) await procs.stop(this.proc, graceMs);
    this.proc = undefined;
  }
}
