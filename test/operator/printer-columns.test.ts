// kubectl get on a real kube-apiserver with the operator running: the printer columns show the domain a
// DeliveryPolicy routes (status.domain, not the MailDomain's name), its scope, the preflight's verdict on a
// MailDomain's servers, and -o wide adds the servers, the mailbox of record and where a TestRecipient's mail goes.
// Checked through kubectl's server-side printing and through the Table API.

import { afterAll, beforeAll, expect, it } from 'vitest';
import { createNamespace, describeCluster } from '../controlplane/suite.ts';
import { createKubeRest, type KubeRest } from '../../operator/kube/rest.ts';
import { freePort } from '../support/net.ts';
import { startSmtpPeer, type SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { condition, getObject, startOperator, type OperatorProcess } from './support.ts';

const OP_NS = 'mailroute-system';
const NS = 'columns';

interface Table {
  kind: string;
  columnDefinitions: { name: string; priority: number }[];
  rows: { cells: unknown[]; object: { metadata: { name: string } } }[];
}

/**
 * kubectl's aligned output as rows keyed by NAME, each cell keyed by its header. Cells are cut at the header's
 * column offsets, so an empty cell stays empty ('').
 */
function rowsOf(stdout: string): Map<string, Record<string, string>> {
  const [header = '', ...lines] = stdout.trimEnd().split('\n');
  const cols = [...header.matchAll(/\S+/g)].map((m) => ({ name: m[0], at: m.index }));
  const out = new Map<string, Record<string, string>>();
  for (const line of lines) {
    const row: Record<string, string> = {};
    cols.forEach((c, i) => {
      row[c.name] = line.slice(c.at, cols[i + 1]?.at ?? line.length).trim();
    });
    out.set(row.NAME ?? '', row);
  }
  return out;
}

/** The header's column names. */
const headerOf = (stdout: string): string[] => (stdout.split('\n')[0] ?? '').trim().split(/\s+/);

/** Some cells of a row. */
const pick = (row: Record<string, string> | undefined, ...names: string[]): string[] =>
  names.map((n) => row?.[n] ?? '(no row)');

describeCluster(
  'printer columns',
  (ctx) => {
    let op: OperatorProcess;
    let rest: KubeRest;
    let oldPeer: SmtpPeer;
    let newPeer: SmtpPeer;
    const kubectl = async (...args: string[]): Promise<string> => {
      const r = await ctx.cp.kubectl(args);
      if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };

    beforeAll(async () => {
      await createNamespace(ctx.cp, OP_NS);
      await createNamespace(ctx.cp, NS);
      rest = createKubeRest(ctx.cp.kubeconfig);
      oldPeer = await startSmtpPeer('old');
      newPeer = await startSmtpPeer('new');
      const closed = await freePort(); // nothing listens there: the preflight finds it unreachable
      const yaml = `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: example-com}
spec:
  domain: example.com
  servers:
    - {name: old, host: 127.0.0.1, port: ${oldPeer.port}, tls: None}
    - {name: new, host: 127.0.0.1, port: ${newPeer.port}, tls: None}
  recipientVerification: {server: old}
---
apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: migration}
spec:
  domainRef: {name: example-com}
  mode: Dual
  primary: old
  secondary: new
  dual: {scope: TestRecipients}
---
apiVersion: mailroute.io/v1alpha1
kind: TestRecipient
metadata: {name: carol}
spec:
  policyRef: {name: migration}
  address: carol@example.com
  forwardTo: carol@zoho.example
  keepPrimaryCopy: false
  expiresAt: "2030-01-01T00:00:00Z"
---
apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: down}
spec:
  domain: down.example
  servers:
    - {name: gone, host: 127.0.0.1, port: ${closed}, tls: None}
---
apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: down-direct}
spec: {domainRef: {name: down}, mode: Direct, primary: gone}
`;
      const r = await ctx.cp.kubectl(['apply', '-n', NS, '-f', '-'], { stdin: yaml });
      if (r.code !== 0) throw new Error(`kubectl apply: ${r.stderr}`);
      op = startOperator(ctx.cp, { namespace: OP_NS, identity: 'op-columns' });
      for (const name of ['migration', 'down-direct']) {
        await waitFor(
          async () => {
            const o = (await getObject(rest, 'DeliveryPolicy', NS, name)) as
              { status?: { domain?: string } } | undefined;
            return o?.status?.domain;
          },
          { timeoutMs: 30_000, what: `status.domain of ${name}` },
        );
      }
      for (const name of ['example-com', 'down']) {
        await waitFor(() => condition(rest, 'MailDomain', NS, name, 'ServersReachable'), {
          timeoutMs: 30_000,
          what: `the preflight of ${name}`,
        });
      }
    });
    afterAll(async () => {
      const code = await op?.stop();
      expect(code, op?.logs()).toBe(0);
      await oldPeer?.close();
      await newPeer?.close();
    });

    it('DeliveryPolicy: DOMAIN is the domain, SCOPE the Dual scope; -o wide adds PRIMARY, SECONDARY, MAILDOMAIN, NEXT, SOFTBOUNCE', async () => {
      const plain = await kubectl('get', 'dp', '-n', NS);
      expect(headerOf(plain)).toEqual(['NAME', 'DOMAIN', 'MODE', 'SCOPE', 'STAGE', 'READY', 'AGE']);
      const rows = rowsOf(plain);
      expect(pick(rows.get('migration'), 'DOMAIN', 'MODE', 'SCOPE')).toEqual([
        'example.com',
        'Dual',
        'TestRecipients',
      ]);
      // Direct has no scope: an empty cell
      expect(pick(rows.get('down-direct'), 'DOMAIN', 'MODE', 'SCOPE')).toEqual([
        'down.example',
        'Direct',
        '',
      ]);

      const wide = await kubectl('get', 'dp', '-n', NS, '-o', 'wide');
      expect(headerOf(wide)).toEqual([
        ...['NAME', 'DOMAIN', 'MODE', 'SCOPE', 'STAGE', 'READY', 'AGE'],
        ...['PRIMARY', 'SECONDARY', 'MAILDOMAIN', 'NEXT', 'SOFTBOUNCE'],
      ]);
      expect(pick(rowsOf(wide).get('migration'), 'PRIMARY', 'SECONDARY', 'MAILDOMAIN')).toEqual([
        'old',
        'new',
        'example-com',
      ]);
      expect(pick(rowsOf(wide).get('down-direct'), 'PRIMARY', 'SECONDARY', 'MAILDOMAIN')).toEqual([
        'gone',
        '',
        'down',
      ]);
    });

    it('MailDomain: REACHABLE is the preflight verdict; -o wide adds SERVERS and VERIFICATION', async () => {
      const plain = await kubectl('get', 'md', '-n', NS);
      expect(headerOf(plain)).toEqual(['NAME', 'DOMAIN', 'REACHABLE', 'READY', 'AGE']);
      expect(pick(rowsOf(plain).get('example-com'), 'DOMAIN', 'REACHABLE')).toEqual(['example.com', 'True']);
      expect(pick(rowsOf(plain).get('down'), 'DOMAIN', 'REACHABLE')).toEqual(['down.example', 'False']);

      const wide = await kubectl('get', 'md', '-n', NS, '-o', 'wide');
      expect(headerOf(wide)).toEqual([
        'NAME',
        'DOMAIN',
        'REACHABLE',
        'READY',
        'AGE',
        'SERVERS',
        'VERIFICATION',
      ]);
      expect(pick(rowsOf(wide).get('example-com'), 'SERVERS', 'VERIFICATION')).toEqual(['old,new', 'old']);
      expect(pick(rowsOf(wide).get('down'), 'SERVERS', 'VERIFICATION')).toEqual(['gone', '']);
    });

    it('TestRecipient: -o wide adds FORWARDTO, KEEPPRIMARYCOPY and EXPIRES', async () => {
      const plain = await kubectl('get', 'tr', '-n', NS);
      expect(headerOf(plain)).toEqual([
        'NAME',
        'ADDRESS',
        'POLICY',
        'ACTIVE',
        'COPIES',
        'LAG',
        'READY',
        'AGE',
      ]);
      const wide = await kubectl('get', 'tr', '-n', NS, '-o', 'wide');
      expect(headerOf(wide)).toEqual([
        ...['NAME', 'ADDRESS', 'POLICY', 'ACTIVE', 'COPIES', 'LAG', 'READY', 'AGE'],
        ...['FORWARDTO', 'KEEPPRIMARYCOPY', 'EXPIRES'],
      ]);
      expect(
        pick(
          rowsOf(wide).get('carol'),
          'ADDRESS',
          'POLICY',
          'ACTIVE',
          'FORWARDTO',
          'KEEPPRIMARYCOPY',
          'EXPIRES',
        ),
      ).toEqual([
        'carol@example.com',
        'migration',
        'True',
        'carol@zoho.example',
        'false',
        '2030-01-01T00:00:00Z',
      ]);
    });

    it('the Table API serves the same columns, wide ones with priority 1', async () => {
      const r = await rest.request<Table>(
        'GET',
        `/apis/mailroute.io/v1alpha1/namespaces/${NS}/deliverypolicies`,
        {
          accept: 'application/json;as=Table;g=meta.k8s.io;v=v1',
        },
      );
      expect(r.ok).toBe(true);
      if (!r.ok) return;
      expect(r.body.kind).toBe('Table');
      expect(r.body.columnDefinitions.map((c) => [c.name, c.priority])).toEqual([
        ['Name', 0],
        ['Domain', 0],
        ['Mode', 0],
        ['Scope', 0],
        ['Stage', 0],
        ['Ready', 0],
        ['Age', 0],
        ['Primary', 1],
        ['Secondary', 1],
        ['MailDomain', 1],
        ['Next', 1],
        ['SoftBounce', 1],
      ]);
      const row = r.body.rows.find((x) => x.object.metadata.name === 'migration');
      // no stages: empty Stage and Next cells; no softBounce: an empty SoftBounce cell
      expect(row?.cells.slice(0, 5)).toEqual(['migration', 'example.com', 'Dual', 'TestRecipients', null]);
      expect(row?.cells.slice(-5)).toEqual(['old', 'new', 'example-com', null, null]);
    });
  },
  { crds: true },
);
