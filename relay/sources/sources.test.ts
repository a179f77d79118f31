import { mkdtemp, rm, writeFile, mkdir, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { compile } from '../../routing/compile.ts';
import { parseManifestText } from '../../routing/parse.ts';
import { ROUTING_TABLE_FORMAT } from '../../routing/model.ts';
import { checkRoutingTable, createRoutingFileSource, loadRoutingFile } from './file.ts';
import { createManifestsSource, loadManifestsDir } from './manifests.ts';
import type { RoutingSnapshot } from './types.ts';

const logger = pino({ level: 'silent' });
const domain = (d: string, port = 25, extra = ''): string => `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: ${d.replaceAll('.', '-')}}
spec:
  domain: ${d}
  servers: [{name: main, host: 127.0.0.1, port: ${port}, tls: None${extra}}]
---
apiVersion: mailroute.io/v1alpha1
kind: DeliveryPolicy
metadata: {name: ${d.replaceAll('.', '-')}}
spec: {domainRef: {name: ${d.replaceAll('.', '-')}}, mode: Direct, primary: main}
`;

const dirs: string[] = [];
const temp = async (): Promise<string> => {
  const d = await mkdtemp(join(tmpdir(), 'mailroute-src-'));
  dirs.push(d);
  return d;
};
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe('manifests folder', () => {
  it('compiles every file (recursively) and picks up Secrets for authSecretRef', async () => {
    const d = await temp();
    await mkdir(join(d, 'sub'));
    await writeFile(
      join(d, 'a.yaml'),
      domain('a.test', 25, ', allowPlaintextAuth: true, authSecretRef: {name: a-smtp}'),
    );
    await writeFile(join(d, 'sub', 'b.yml'), domain('b.test'));
    await writeFile(
      join(d, 'secret.yaml'),
      'apiVersion: v1\nkind: Secret\nmetadata: {name: a-smtp, labels: {mailroute.io/smtp-auth: "true"}}\nstringData: {username: u, password: p}\n',
    );
    await writeFile(join(d, 'notes.txt'), 'not a manifest');
    const r = await loadManifestsDir(d);
    if (!r.ok) throw new Error(r.errors.join('\n'));
    expect(Object.keys(r.snapshot.table.domains).sort()).toEqual(['a.test', 'b.test']);
    expect(r.snapshot.revision).toMatch(/^[0-9a-f]{64}$/);
    expect(r.snapshot.secrets.get('default/a-smtp')).toEqual({ username: 'u', password: 'p' });
  });

  it('a Secret without the opt-in label is not used by authSecretRef (a warning says why)', async () => {
    const d = await temp();
    await writeFile(
      join(d, 'a.yaml'),
      domain('a.test', 25, ', allowPlaintextAuth: true, authSecretRef: {name: db}'),
    );
    await writeFile(
      join(d, 'secret.yaml'),
      [
        'apiVersion: v1\nkind: Secret\ntype: kubernetes.io/basic-auth\nmetadata: {name: db}\nstringData: {username: app, password: database-password}\n',
        // the type alone does not opt in; a label with another value neither
        'apiVersion: v1\nkind: Secret\ntype: mailroute.io/smtp-auth\nmetadata: {name: typed}\nstringData: {username: u, password: p}\n',
        'apiVersion: v1\nkind: Secret\nmetadata: {name: no, labels: {mailroute.io/smtp-auth: "false"}}\nstringData: {username: u, password: p}\n',
      ].join('---\n'),
    );
    const r = await loadManifestsDir(d);
    if (!r.ok) throw new Error(r.errors.join('\n'));
    expect([...r.snapshot.secrets.keys()]).toEqual([]);
    expect(r.warnings).toEqual([
      'Secret/db: metadata.labels: not used by authSecretRef without the label mailroute.io/smtp-auth: "true"',
    ]);
  });

  it('a schema error is a failed load naming the file; a missing folder too', async () => {
    const d = await temp();
    await writeFile(join(d, 'bad.yaml'), domain('a.test', 70000));
    const r = await loadManifestsDir(d);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.errors.join('\n')).toMatch(/bad\.yaml/);
    expect((await loadManifestsDir(join(d, 'nope'))).ok).toBe(false);
  });

  it('watches: a change swaps within 2 s, an invalid one keeps the last good table', async () => {
    const d = await temp();
    await writeFile(join(d, 'a.yaml'), domain('a.test'));
    const src = createManifestsSource({ dir: d, logger, pollMs: 1000 });
    await src.start();
    const first = src.current();
    expect(first).toBeDefined();
    const seen: RoutingSnapshot[] = [];
    src.onChange((s) => seen.push(s));
    const t0 = Date.now();
    // an editor's atomic save: write elsewhere, rename over
    await writeFile(join(d, '.a.yaml.swp'), domain('a.test', 2525));
    await rename(join(d, '.a.yaml.swp'), join(d, 'a.yaml'));
    const { waitFor } = await import('../../test/support/wait.ts');
    await waitFor(() => seen.length === 1, { timeoutMs: 3000, what: 'the change' });
    expect(Date.now() - t0).toBeLessThan(2000);
    expect(seen[0]?.table.domains['a.test']?.servers['main']?.port).toBe(2525);
    await writeFile(join(d, 'a.yaml'), 'kind: [');
    await waitFor(() => src.lastError() !== undefined, { timeoutMs: 3000, what: 'the error' });
    expect(src.current()?.revision).toBe(seen[0]?.revision);
    expect(seen.length).toBe(1);
    await src.close();
  });
});

describe('routing file', () => {
  const table = (): string => {
    const parsed = parseManifestText(domain('f.test'), 'x.yaml');
    return JSON.stringify(compile(parsed.objects).table);
  };

  it('loads a compiled table with the same revision compile() gives', async () => {
    const d = await temp();
    const parsed = parseManifestText(domain('f.test'), 'x.yaml');
    const compiled = compile(parsed.objects);
    await writeFile(join(d, 't.json'), compiled.json);
    const r = await loadRoutingFile(join(d, 't.json'));
    expect(r.ok && r.snapshot.revision).toBe(compiled.revision);
  });

  it('refuses what is not a RoutingTable', async () => {
    expect(checkRoutingTable([])).toEqual(['not a JSON object']);
    expect(checkRoutingTable({ apiVersion: 'x', kind: 'RoutingTable', domains: {}, sources: [] })).toEqual([
      'apiVersion: must be mailroute.io/v1alpha1',
    ]);
    const d = await temp();
    // a table of a newer format than this relay routes by (a newer operator's): refused, never half-read
    const table = { apiVersion: 'mailroute.io/v1alpha1', kind: 'RoutingTable', domains: {}, sources: [] };
    expect(checkRoutingTable({ ...table, format: ROUTING_TABLE_FORMAT })).toEqual([]);
    expect(checkRoutingTable({ ...table, format: ROUTING_TABLE_FORMAT + 1 })).toEqual([
      `format: ${ROUTING_TABLE_FORMAT + 1}: this relay routes by tables of format ${ROUTING_TABLE_FORMAT} at most (a newer operator wrote this one); it keeps the last table it read until the relay is upgraded`,
    ]);
    for (const bad of [0, 1.5, '2', null])
      expect(checkRoutingTable({ ...table, format: bad })[0]).toMatch(/^format: must be a whole number/);
    // other fields it does not know are ignored (a field that changes routing comes with a new format)
    expect(checkRoutingTable({ ...table, later: { x: 1 } })).toEqual([]);
    await writeFile(join(d, 't.json'), '{"broken"');
    const r = await loadRoutingFile(join(d, 't.json'));
    expect(!r.ok && r.errors[0]).toMatch(/not JSON/);
  });

  it('watches the file and keeps the last good table on a bad write', async () => {
    const d = await temp();
    const f = join(d, 't.json');
    await writeFile(f, table());
    const src = createRoutingFileSource({ file: f, logger, pollMs: 200 });
    await src.start();
    const rev = src.current()?.revision;
    expect(rev).toBeDefined();
    await writeFile(f, '{}');
    const { waitFor } = await import('../../test/support/wait.ts');
    await waitFor(() => src.lastError() !== undefined, { timeoutMs: 3000, what: 'the error' });
    expect(src.current()?.revision).toBe(rev);
    await src.close();
  });
});
