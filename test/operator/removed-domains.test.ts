// A MailDomain deleted by mistake in a cluster, on a real API server: the operator's routing table names the domain
// that left it (removedDomains, for --removed-domain-grace), so that a relay that never served the domain itself (a
// new replica, an empty spool) answers 451 for its mail, as the relays that did serve it do, rather than 554 relay
// access denied, which makes senders bounce it. A new operator process keeps the time the domain left (it reads the
// applied table back), and the entry is dropped when the grace ends, with no change to any object.

import { rm } from 'node:fs/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createNamespace, describeCluster } from '../controlplane/suite.ts';
import { createKubeRest, type KubeRest } from '../../operator/kube/rest.ts';
import type { RoutingTable } from '../../routing/model.ts';
import { waitFor } from '../support/wait.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { dualDomain, rcptReply, tempDir, type RelayChild } from '../relay/relay-harness.ts';
import { routingRevision, spawnTestRelay, startOperator, type OperatorProcess } from './support.ts';

const OP_NS = 'mailroute-system';
const NS = 'removed';
const GRACE = ['--removed-domain-grace', '10s'];

describeCluster('a MailDomain deleted: the routing table names it for the grace', (ctx) => {
  let op: OperatorProcess | undefined;
  let rest: KubeRest;
  let peer: SmtpPeer;
  let relay: RelayChild | undefined;
  let dir = '';
  const kubectl = async (...args: string[]): Promise<void> => {
    const r = await ctx.cp.kubectl(args, {});
    if (r.code !== 0) throw new Error(r.stderr);
  };
  const table = async (): Promise<{ revision: string; table: RoutingTable } | undefined> => {
    const r = await routingRevision(rest, OP_NS);
    return r === undefined ? undefined : { revision: r.revision, table: JSON.parse(r.json) as RoutingTable };
  };

  beforeAll(async () => {
    await createNamespace(ctx.cp, OP_NS);
    await createNamespace(ctx.cp, NS);
    rest = createKubeRest(ctx.cp.kubeconfig);
    peer = await startSmtpPeer('dest');
    const manifests = `${dualDomain('keep.example', peer.port, peer.port, { mode: 'Direct' })}---\n${dualDomain(
      'gone.example',
      peer.port,
      peer.port,
      { mode: 'Direct' },
    )}`;
    const r = await ctx.cp.kubectl(['apply', '-n', NS, '-f', '-'], { stdin: manifests });
    if (r.code !== 0) throw new Error(r.stderr);
    op = startOperator(ctx.cp, { namespace: OP_NS, identity: 'op-removed-1', args: GRACE });
    await waitFor(async () => Object.keys((await table())?.table.domains ?? {}).length === 2, {
      timeoutMs: 30_000,
      what: 'the table with both domains',
    });
  });
  afterAll(async () => {
    relay?.kill('SIGTERM');
    await relay?.exited;
    const code = await op?.stop();
    expect(code, op?.logs()).toBe(0);
    await peer?.close();
    if (dir !== '') await rm(dir, { recursive: true, force: true });
  });

  it('names the deleted domain, a relay with an empty spool answers 451, a restart keeps the time, the grace ends', async () => {
    await kubectl('delete', '-n', NS, 'maildomain/gone-example', 'deliverypolicy/gone-example');
    const removed = await waitFor(
      async () => {
        const t = await table();
        return t?.table.removedDomains?.['gone.example'] !== undefined ? t : undefined;
      },
      { timeoutMs: 20_000, what: 'gone.example in removedDomains' },
    );
    expect(Object.keys(removed.table.domains)).toEqual(['keep.example']);
    const leftAt = removed.table.removedDomains?.['gone.example'] ?? '';
    expect(Math.abs(Date.now() - Date.parse(leftAt))).toBeLessThan(20_000);

    // a relay that starts now never served gone.example: it answers 451 by the table's record
    dir = await tempDir('removed-relay');
    relay = await spawnTestRelay(ctx.cp, OP_NS, 'relay-0', dir);
    const port = relay.smtpPort;
    await waitFor(async () => /^250 /.test(await rcptReply(port, 'ann@keep.example')), {
      timeoutMs: 20_000,
      what: 'the relay routing by the table',
    });
    expect(await rcptReply(port, 'ann@gone.example')).toMatch(
      /^451 4\.3\.0 gone\.example left the routing table less than a minute ago; try again later$/,
    );
    expect(await rcptReply(port, 'ann@never.example')).toMatch(/^554 5\.7\.1 /);

    // a new operator process reads the applied table back: same record, same time, same revision
    expect(await op?.stop()).toBe(0);
    op = startOperator(ctx.cp, { namespace: OP_NS, identity: 'op-removed-2', args: GRACE });
    const second = op;
    await waitFor(() => second.logs().includes('routing table applied'), {
      timeoutMs: 30_000,
      what: 'the second operator applying its table',
    });
    const after = await table();
    expect(after?.table.removedDomains).toEqual({ 'gone.example': leftAt });
    expect(after?.revision).toBe(removed.revision);

    // the grace ends: the entry goes with no change to any object, and the relay answers 554
    await waitFor(async () => (await table())?.table.removedDomains === undefined, {
      timeoutMs: 30_000,
      what: 'the record dropped after the grace',
    });
    expect(Date.now() - Date.parse(leftAt)).toBeGreaterThanOrEqual(10_000);
    await waitFor(async () => /^554 5\.7\.1 /.test(await rcptReply(port, 'ann@gone.example')), {
      timeoutMs: 10_000,
      what: 'the relay answering 554 after the grace',
    });
  });
});
