// In-process front half for the inbound tests: manifests source -> router -> smtp-server inbound -> real spool.
// No delivery: the tests read what was spooled.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { createInbound, type Inbound, type InboundOptions } from '../../relay/inbound/server.ts';
import { createRouter } from '../../relay/inbound/router.ts';
import type { RecipientRouter } from '../../relay/inbound/rcpt.ts';
import { createCalloutVerifier } from '../../relay/inbound/verify.ts';
import { createManifestsSource } from '../../relay/sources/manifests.ts';
import { openSpool, type SpoolFs } from '../../relay/spool/spool.ts';
import type { Spool, SpoolState } from '../../relay/spool/types.ts';
import { createRelayMetrics, type RelayMetrics } from '../../relay/telemetry/metrics.ts';
import { domainManifests } from './relay-harness.ts';

export interface InboundHarness {
  port: number;
  dir: string;
  spool: Spool;
  inbound: Inbound;
  metrics: RelayMetrics;
  /** Committed messages: state and body. */
  spooled(): Promise<{ state: SpoolState; body: Buffer }[]>;
  close(): Promise<void>;
}

const baseOptions: InboundOptions = {
  hostname: 'relay.test',
  maxMessageSize: 1024 * 1024,
  maxRecipients: 5,
  maxConnections: 100,
  maxConnectionsPerIp: 20,
  idleTimeoutMs: 30_000,
  dataTimeoutMs: 30_000,
  bareLf: 'reject',
  greetingDelayMs: 0,
};

export async function startInbound(
  manifests: string,
  over: Partial<InboundOptions> = {},
  fs?: SpoolFs,
): Promise<InboundHarness> {
  const dir = await mkdtemp(join(tmpdir(), 'mailroute-inbound-'));
  const mdir = join(dir, 'manifests');
  const { mkdir } = await import('node:fs/promises');
  await mkdir(mdir);
  await writeFile(join(mdir, 'routing.yaml'), manifests);
  const logger = pino({ level: 'silent' });
  const spool = await openSpool({ dir: join(dir, 'spool'), logger, ...(fs ? { fs } : {}) });
  const metrics = createRelayMetrics(new Registry(), false);
  const source = createManifestsSource({ dir: mdir, logger, pollMs: 200 });
  await source.start();
  let router: RecipientRouter | undefined;
  const snap = source.current();
  if (!snap) throw new Error(`manifests did not load: ${JSON.stringify(source.lastError())}`);
  router = createRouter(snap.table, snap.revision);
  source.onChange((s) => {
    router = createRouter(s.table, s.revision);
  });
  const inbound = createInbound({
    options: { ...baseOptions, ...over },
    router: () => router,
    spool,
    verifier: createCalloutVerifier({ heloName: 'relay.test', timeoutMs: 3000 }),
    metrics,
    logger,
  });
  const { port } = await inbound.listen(0, '127.0.0.1');
  return {
    port,
    dir,
    spool,
    inbound,
    metrics,
    async spooled() {
      const out = [];
      for (const id of await spool.list()) {
        const r = await spool.load(id);
        if (!r.ok) continue;
        out.push({ state: r.state, body: await spool.readBody(id) });
      }
      return out;
    },
    async close() {
      await source.close();
      await inbound.close(100);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function directDomain(domain: string, host: string, port: number, extra = ''): string {
  return domainManifests({
    domain,
    servers: [`name: main, host: ${host}, port: ${port}, tls: None`],
    extraDomain: extra,
    policy: '  mode: Direct\n  primary: main\n',
  });
}
