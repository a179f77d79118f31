// How the operator judges relay heartbeats on a real kube-apiserver: by when it saw each Lease renewed, on its own
// monotonic clock (contract/relay-lease.ts HeartbeatObserver), so a relay whose node clock is 45 s behind counts;
// and when its watch goes silent (a proxy between the operator and the API server drops every existing flow without a
// FIN or RST: a dead connection, or the API server away) it keeps the relays last seen instead of reporting
// "0/0 relays programmed" while the relays are fine.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { createNamespace, describeCluster, REPO_ROOT } from '../controlplane/suite.ts';
import { createKubeRest, type KubeRest } from '../../operator/kube/rest.ts';
import { waitFor } from '../support/wait.ts';
import { condition, heartbeat, routingRevision, startOperator, type OperatorProcess } from './support.ts';

const OP_NS = 'mailroute-system';
const NS = 'demo';

/** A TCP proxy to the API server whose existing flows can be frozen: data dropped both ways, nothing closed. */
function freezingProxy(target: URL): {
  listen(): Promise<number>;
  freezeAll(): number;
  close(): void;
} {
  const flows: { c: Socket; u: Socket; frozen: boolean }[] = [];
  const server: Server = createServer((c) => {
    const u = connect(Number(target.port), target.hostname);
    const f = { c, u, frozen: false };
    flows.push(f);
    c.on('data', (d) => void (f.frozen || u.write(d)));
    u.on('data', (d) => void (f.frozen || c.write(d)));
    c.on('error', () => u.destroy());
    u.on('error', () => void (f.frozen || c.destroy()));
    c.on('close', () => u.destroy());
    u.on('close', () => void (f.frozen || c.destroy()));
  });
  return {
    listen: () =>
      new Promise<number>((r) =>
        server.listen(0, '127.0.0.1', () => r((server.address() as { port: number }).port)),
      ),
    freezeAll() {
      let n = 0;
      for (const f of flows) {
        if (f.c.destroyed) continue;
        f.frozen = true;
        n++;
      }
      return n;
    },
    close() {
      server.close();
      for (const f of flows) {
        f.c.destroy();
        f.u.destroy();
      }
    },
  };
}

/**
 * Relays simulated by their heartbeat Leases, written directly (not through the proxy): each follows the routing
 * ConfigMap and renews every 10 s, as a relay does, with renewTime from its own node clock (`skewMs` off ours).
 */
function simulatedRelays(rest: KubeRest, relays: { pod: string; skewMs: number }[]): { stop(): void } {
  const served = new Map<string, string>();
  const renewed = new Map<string, number>();
  let busy = false;
  const tick = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    try {
      const rev = (await routingRevision(rest, OP_NS))?.revision;
      for (const { pod, skewMs } of relays) {
        const due = performance.now() - (renewed.get(pod) ?? -Infinity) >= 10_000;
        if (rev === undefined || (rev === served.get(pod) && !due)) continue;
        await heartbeat(rest, OP_NS, pod, rev, new Date(Date.now() + skewMs));
        served.set(pod, rev);
        renewed.set(pod, performance.now());
      }
    } catch {
      // try again next tick
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => void tick(), 100);
  return { stop: () => clearInterval(timer) };
}

describeCluster(
  'operator: relay heartbeats judged on its own clock, and kept while it cannot see them',
  (ctx) => {
    let op: OperatorProcess;
    let rest: KubeRest;
    let relays: { stop(): void };
    let proxy: ReturnType<typeof freezingProxy>;
    const ready = () => condition(rest, 'DeliveryPolicy', NS, 'example-com', 'Ready');

    beforeAll(async () => {
      await createNamespace(ctx.cp, OP_NS);
      await createNamespace(ctx.cp, NS);
      rest = createKubeRest(ctx.cp.kubeconfig);
      const applied = await ctx.cp.kubectl(['apply', '-n', NS, '-f', '-'], {
        stdin: readFileSync(join(REPO_ROOT, 'examples/demo/mailroute.yaml'), 'utf8'),
      });
      if (applied.code !== 0) throw new Error(`kubectl apply: ${applied.stderr}`);
      proxy = freezingProxy(new URL(ctx.cp.server));
      const port = await proxy.listen();
      const kc = parse(readFileSync(ctx.cp.kubeconfigPath, 'utf8')) as {
        clusters: { cluster: { server: string } }[];
      };
      for (const c of kc.clusters) c.cluster.server = `https://127.0.0.1:${port}`;
      const proxied = join(ctx.cp.dir, 'proxied.kubeconfig');
      writeFileSync(proxied, stringify(kc));
      op = startOperator(ctx.cp, {
        namespace: OP_NS,
        identity: 'op-heartbeats',
        args: [
          '--kubeconfig',
          proxied,
          '--leader-elect=false',
          '--relay-statefulset',
          '',
          '--preflight-interval',
          'off',
        ],
      });
      // relay-1's node clock is 45 s behind: every renewTime it writes is 45 s old by the operator's clock
      relays = simulatedRelays(rest, [
        { pod: 'relay-0', skewMs: 0 },
        { pod: 'relay-1', skewMs: -45_000 },
      ]);
    });
    afterAll(async () => {
      relays.stop();
      await op.stop();
      proxy.close();
    });

    it('counts a relay whose node clock is 45 s behind as programmed, and logs the skew naming it', async () => {
      await waitFor(async () => (await ready())?.message === '2/2 relays programmed', {
        timeoutMs: 30_000,
        what: `Ready 2/2 (logs: ${op.logs().slice(-2000)})`,
      });
      await waitFor(
        () =>
          op
            .logs()
            .split('\n')
            .some((l) => l.includes('clock skew') && l.includes('"relay":"mailroute-relay-relay-1"')),
        { timeoutMs: 30_000, what: 'the skew warning naming mailroute-relay-relay-1' },
      );
      // and it stays counted past the lease duration (judged by its renewals, not by its renewTime's age)
      const until = performance.now() + 35_000;
      const seen = new Set<string>();
      await waitFor(
        async () => {
          const c = await ready();
          seen.add(`${c?.status}/${c?.reason}/${c?.message}`);
          return performance.now() > until;
        },
        { timeoutMs: 45_000, intervalMs: 500, what: '35 s of Ready' },
      );
      expect([...seen]).toEqual(['True/Ready/2/2 relays programmed']);
    }, 120_000);

    it('keeps the relays last seen while its connections to the API server are silently dead', async () => {
      await waitFor(async () => (await ready())?.message === '2/2 relays programmed', {
        timeoutMs: 30_000,
        what: 'Ready 2/2',
      });
      const frozen = proxy.freezeAll();
      expect(frozen).toBeGreaterThan(0);
      // The relays go on renewing (directly); the operator's watch sees none of it. Before the fix every object went
      // to Ready=False NoRelays "0/0 relays programmed" about 30-45 s after the freeze.
      const t0 = performance.now();
      const seen = new Set<string>();
      await waitFor(
        async () => {
          const c = await ready();
          seen.add(`${c?.status}/${c?.reason}/${c?.message}`);
          return performance.now() - t0 > 60_000;
        },
        { timeoutMs: 75_000, intervalMs: 500, what: '60 s of Ready while frozen' },
      );
      const unreadable = op.logs().includes('relay heartbeats cannot be read');
      console.log(
        `[heartbeats] ${frozen} flows frozen for 60 s; direct read failed at some point: ${unreadable}; Ready seen: ${[...seen].join(' | ')}`,
      );
      expect([...seen]).toEqual(['True/Ready/2/2 relays programmed']);
    }, 120_000);
  },
  { crds: true },
);
