// Scale-down without stranding mail, end to end: two real relay processes (node bin/mailroute.js relay) in cluster
// mode on a real kube-apiserver, a real destination that is down, relay A with queued mail. SIGTERM A: it hands the
// queue to B (found through B's heartbeat Lease), deletes its Lease, exits with an empty spool; the destination
// comes up and B delivers every leg. Nothing is lost.
import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { afterAll, expect, it } from 'vitest';
import { CoordinationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { describeCluster } from '../controlplane/suite.ts';
import { freePort } from '../support/net.ts';
import { waitFor } from '../support/wait.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import {
  dualDomain,
  httpGet,
  metricValue,
  spawnRelay,
  tempDir,
  type RelayChild,
} from '../relay/relay-harness.ts';
import { parseManifestText } from '../../routing/parse.ts';
import { compile } from '../../routing/compile.ts';
import { encodeRouting } from '../../contract/routing-configmap.ts';

const NS = 'mailroute-system';
const N = 20;

describeCluster(
  'relay drain on SIGTERM',
  (ctx) => {
    let oldDest: SmtpPeer | undefined;
    let newDest: SmtpPeer | undefined;
    const children: RelayChild[] = [];
    const dirs: string[] = [];
    afterAll(async () => {
      for (const c of children) if (c.proc.exitCode === null) c.kill('SIGKILL');
      await oldDest?.close();
      await newDest?.close();
      for (const d of dirs) await rm(d, { recursive: true, force: true });
    });

    const lease = (pod: string) =>
      ctx.cp.kubeconfig
        .makeApiClient(CoordinationV1Api)
        .readNamespacedLease({ namespace: NS, name: `mailroute-relay-${pod}` })
        .catch((err: unknown) => {
          if ((err as { code?: number }).code === 404) return undefined;
          throw err;
        });

    /** Message files in a spool's queue/ (a running relay's small messages may be in its accept log alone). */
    const queued = async (spoolDir: string): Promise<number> => {
      const files = await readdir(join(spoolDir, 'queue')).catch(() => [] as string[]);
      return files.filter((f) => f.endsWith('.msg')).length;
    };
    /** A running relay's queue, by its metrics: messages in a state, or all of them. */
    const inQueue = async (child: RelayChild, state?: 'pending' | 'deferred'): Promise<number> => {
      const text = (await httpGet(child.httpPort, '/metrics')).body;
      const of = (st: string): number =>
        metricValue(text, 'mailroute_queue_messages', `{state="${st}"}`) ?? 0;
      return state === undefined ? of('pending') + of('deferred') : of(state);
    };

    it('hands the queue to the peer relay, which delivers every leg once the destination is back', async () => {
      // Destinations: started to learn their ports, then taken down (an outage).
      oldDest = await startSmtpPeer('old');
      newDest = await startSmtpPeer('new');
      await oldDest.down();
      await newDest.down();

      const parsed = parseManifestText(dualDomain('example.com', oldDest.port, newDest.port), 'drain.yaml');
      expect(parsed.errors).toEqual([]);
      const compiled = compile(parsed.objects);
      expect(compiled.issues).toEqual([]);
      const cm = encodeRouting(compiled.json, compiled.revision, { namespace: NS }).index;
      await ctx.cp.kubeconfig.makeApiClient(CoreV1Api).createNamespacedConfigMap({ namespace: NS, body: cm });

      const start = async (pod: string): Promise<{ child: RelayChild; spool: string }> => {
        const dir = await tempDir(`drain-${pod}`);
        dirs.push(dir);
        const spool = join(dir, 'spool');
        const port = await freePort();
        const child = await spawnRelay(
          [
            '--configmap', `${NS}/mailroute-routing`,
            '--allow-destinations', '127.0.0.0/8', // the cluster default denies loopback; the sinks are on it
            '--listen', `127.0.0.1:${port}`,
            '--http', '127.0.0.1:0',
            '--admin', '127.0.0.1:0',
            '--spool', spool,
            '--hostname', `${pod}.test`,
            '--retry-schedule', '1s',
            '--greeting-delay', '0',
            '--shutdown-timeout', '2s',
          ], // prettier-ignore
          { KUBECONFIG: ctx.cp.kubeconfigPath, POD_NAME: pod, POD_NAMESPACE: NS, POD_IP: '127.0.0.1' },
        );
        children.push(child);
        return { child, spool };
      };
      const a = await start('relay-a');
      const b = await start('relay-b');

      // Both heartbeat Leases carry the served revision (what the operator counts as Programmed).
      for (const pod of ['relay-a', 'relay-b']) {
        const l = await waitFor(async () => {
          const x = await lease(pod);
          return x?.metadata?.annotations?.['mailroute.io/revision'] === compiled.revision ? x : undefined;
        }, { what: `${pod} lease with the revision` }); // prettier-ignore
        expect(l.metadata?.annotations?.['mailroute.io/ready']).toBe('true');
        expect(l.spec?.holderIdentity).toBe(pod);
      }

      // Mail into A while the destination is down: every message answered 250 sits in A's spool.
      const client = nodemailer.createTransport({ host: '127.0.0.1', port: a.child.smtpPort, secure: false, ignoreTLS: true, pool: true, maxConnections: 4 }); // prettier-ignore
      try {
        await Promise.all(
          Array.from({ length: N }, (_, i) =>
            client.sendMail({
              envelope: { from: 'sender@outside.example', to: [`user${i}@example.com`] },
              raw: `From: sender@outside.example\r\nTo: user${i}@example.com\r\nSubject: drain ${i}\r\nMessage-ID: <drain-${i}@test>\r\n\r\nbody ${i}\r\n`,
            }),
          ),
        );
      } finally {
        client.close();
      }
      // (a small message is in the spool's accept log from its 250 on: it gets its own file only as the log lets it
      // go, or when the relay stops; a running relay's queue is read from its metrics)
      await waitFor(async () => (await inQueue(a.child, 'deferred')) === N, { what: `${N} deferred messages in A's queue` }); // prettier-ignore
      expect(await inQueue(b.child)).toBe(0);

      // Scale-down: SIGTERM A.
      const t0 = performance.now();
      a.child.kill('SIGTERM');
      expect(await a.child.exited).toBe(0);
      const drainMs = performance.now() - t0;
      console.log(
        `[drain] SIGTERM -> relay A exited with ${N} messages handed to B: ${drainMs.toFixed(0)} ms`,
      );
      expect(await queued(a.spool)).toBe(0);
      expect((await readdir(join(a.spool, 'queue'))).filter((f) => !f.startsWith('.'))).toEqual([]);
      expect(await lease('relay-a')).toBeUndefined();
      expect(a.child.logs.join('\n')).toContain('drain: handed off to peer relay');
      await waitFor(async () => (await inQueue(b.child)) === N, { what: `${N} messages in B's queue` });

      // The destination comes back: B delivers every leg (primary to old, copy to new).
      await oldDest.up();
      await newDest.up();
      await waitFor(
        () =>
          Array.from({ length: N }, (_, i) => `user${i}@example.com`).every(
            (r) => oldDest?.for(r).length && newDest?.for(r).length,
          ),
        { timeoutMs: 30_000, what: 'every leg delivered by B' },
      );
      await waitFor(async () => (await inQueue(b.child)) === 0, {
        timeoutMs: 10_000,
        what: "B's queue empty",
      });
      for (let i = 0; i < N; i++) {
        const got = oldDest.for(`user${i}@example.com`)[0];
        expect(got?.mailFrom).toBe('sender@outside.example');
        expect(got?.raw.toString()).toContain(`Message-ID: <drain-${i}@test>`);
        expect(got?.raw.toString()).toContain(`body ${i}`);
      }
      expect(new Set(oldDest.messages.flatMap((m) => m.rcptTo)).size).toBe(N);

      b.child.kill('SIGTERM');
      expect(await b.child.exited).toBe(0);
      expect(await queued(b.spool)).toBe(0);
      expect(await lease('relay-b')).toBeUndefined();
    });
  },
  { crds: false, namespaces: [NS] },
);
