import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatManifestError } from '../routing/parse.ts';
import { loadAndCompile, loadManifests } from './manifests.ts';

const root = mkdtempSync(join(tmpdir(), 'mailroute-manifests-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const domain = (name: string, domain: string) => `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: ${name}}
spec: {domain: ${domain}, servers: [{name: a, host: mail.example}]}
`;

describe('loadManifests', () => {
  it('reads directories recursively in sorted order, skipping dot-files and non-manifest files', async () => {
    const dir = join(root, 'tree');
    mkdirSync(join(dir, 'sub'), { recursive: true });
    mkdirSync(join(dir, '.git'), { recursive: true });
    writeFileSync(join(dir, 'b.yaml'), domain('b', 'b.example'));
    writeFileSync(join(dir, 'sub', 'a.yml'), domain('a', 'a.example'));
    writeFileSync(
      join(dir, 'c.json'),
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Secret',
        metadata: { name: 's' },
        stringData: { username: 'u', password: 'p' },
      }),
    );
    writeFileSync(join(dir, 'README.md'), '# not a manifest: {');
    writeFileSync(join(dir, '.hidden.yaml'), 'broken: [');
    writeFileSync(join(dir, '.git', 'x.yaml'), 'broken: [');
    const r = await loadManifests([dir]);
    expect(r.errors).toEqual([]);
    expect(r.objects.map((o) => o.metadata.name)).toEqual(['b', 'a']);
    expect(r.secrets).toEqual([{ namespace: 'default', name: 's', data: { username: 'u', password: 'p' } }]);
    expect(r.origins.get('MailDomain/default/a')).toBe(join(dir, 'sub', 'a.yml'));
  });

  it('reads a file named explicitly whatever its extension', async () => {
    const file = join(root, 'manifest.txt');
    writeFileSync(file, domain('t', 't.example'));
    expect((await loadManifests([file])).objects).toHaveLength(1);
  });

  it('reports missing paths and objects declared in two files, and keeps going', async () => {
    const dir = join(root, 'dup');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, '1.yaml'), domain('x', 'x.example'));
    writeFileSync(join(dir, '2.yaml'), domain('x', 'y.example'));
    const r = await loadManifests([join(root, 'missing'), dir]);
    expect(r.errors.map(formatManifestError)).toEqual([
      `${join(root, 'missing')}: cannot read: ENOENT`,
      `${join(dir, '2.yaml')}: MailDomain/x: declared twice (also in ${join(dir, '1.yaml')})`,
    ]);
    expect(r.objects).toHaveLength(1);
  });

  it('loadAndCompile names the file of an issue', async () => {
    const dir = join(root, 'issue');
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, 'p.yaml'),
      'apiVersion: mailroute.io/v1alpha1\nkind: DeliveryPolicy\nmetadata: {name: p}\nspec: {domainRef: {name: nope}, mode: Direct, primary: a}\n',
    );
    const r = await loadAndCompile([dir]);
    expect(r.issueLines).toEqual([
      `${join(dir, 'p.yaml')}: DeliveryPolicy/p: spec.domainRef.name: MailDomain default/nope not found (DomainNotFound)`,
    ]);
  });
});
