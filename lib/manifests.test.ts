import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
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
    expect(r.secrets).toEqual([
      { namespace: 'default', name: 's', data: { username: 'u', password: 'p' }, labels: {} },
    ]);
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

describe('what is not a manifest file: before, a named pipe hung the read forever and /dev/zero took 700 MB', () => {
  it.each<[string, (dir: string) => void, RegExp]>([
    ['a named pipe', (dir) => execFileSync('mkfifo', [join(dir, 'pipe.yaml')]), /pipe\.yaml$/],
    ['a link to a device', (dir) => symlinkSync('/dev/zero', join(dir, 'zero.yaml')), /zero\.yaml$/],
  ])('%s is an error naming it; the other files are read', async (_, make, file) => {
    const dir = mkdtempSync(join(root, 'special-'));
    writeFileSync(join(dir, 'a.yaml'), domain('a', 'a.example'));
    make(dir);
    const r = await loadManifests([dir]);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]?.file).toMatch(file);
    expect(r.errors[0]?.message).toMatch(/(a named pipe|a device), not a manifest file: not read/);
    expect(r.objects.map((o) => o.metadata.name)).toEqual(['a']);
  });

  it('a named pipe named on the command line is read (-f /dev/stdin), through the size bound', async () => {
    const dir = mkdtempSync(join(root, 'pipe-'));
    const pipe = join(dir, 'p');
    execFileSync('mkfifo', [pipe]);
    // the writer opens the pipe once the loader does (each open waits for the other side)
    const writer = writeFile(pipe, domain('piped', 'piped.example'));
    const r = await loadManifests([pipe]);
    await writer;
    expect(r.errors).toEqual([]);
    expect(r.objects.map((o) => o.metadata.name)).toEqual(['piped']);
  });

  it('a device named on the command line stops at the size bound', async () => {
    const r = await loadManifests(['/dev/zero'], { maxFileBytes: 1024, maxTotalBytes: 4096 });
    expect(r.errors.map((e) => e.message)).toEqual([
      'grew past the 1 KiB a manifest file may have while it was read (raise it with --max-manifest-size)',
    ]);
  });

  it('a folder is read once: a link back to it (a loop) or to a folder read already is an error naming both', async () => {
    const dir = mkdtempSync(join(root, 'loop-'));
    mkdirSync(join(dir, 'sub'));
    writeFileSync(join(dir, 'a.yaml'), domain('a', 'a.example'));
    writeFileSync(join(dir, 'sub', 'b.yaml'), domain('b', 'b.example'));
    symlinkSync('..', join(dir, 'sub', 'up'));
    symlinkSync('sub', join(dir, 'twin'));
    const r = await loadManifests([dir]);
    expect(r.errors.map((e) => [e.file, e.message])).toEqual([
      [join(dir, 'sub', 'up'), `the folder ${dir} again (a symbolic link): not read twice`],
      [join(dir, 'twin'), `the folder ${join(dir, 'sub')} again (a symbolic link): not read twice`],
    ]);
    expect(r.objects.map((o) => o.metadata.name)).toEqual(['a', 'b']);
  });

  it('a link to a folder read nowhere else is followed (a mounted ConfigMap, a shared folder)', async () => {
    const dir = mkdtempSync(join(root, 'link-'));
    const shared = mkdtempSync(join(root, 'shared-'));
    writeFileSync(join(shared, 's.yaml'), domain('s', 's.example'));
    symlinkSync(shared, join(dir, 'shared'));
    const r = await loadManifests([dir]);
    expect(r.errors).toEqual([]);
    expect(r.objects.map((o) => o.metadata.name)).toEqual(['s']);
  });
});

describe('input bounds (a 50 MB manifest took check 53 s and 2.7 GB)', () => {
  const dir = join(root, 'bounds');
  mkdirSync(dir, { recursive: true });
  const md = (name: string, pad = 0) =>
    `# ${'x'.repeat(pad)}\napiVersion: mailroute.io/v1alpha1\nkind: MailDomain\nmetadata: {name: ${name}}\nspec:\n  domain: ${name}.example\n  servers: [{name: a, host: 10.0.0.1}]\n`;

  it('refuses a file over --max-manifest-size with an error naming the file and the flag', async () => {
    writeFileSync(join(dir, 'big.yaml'), md('big', 5 * 1024 * 1024));
    writeFileSync(join(dir, 'small.yaml'), md('small'));
    const r = await loadManifests([dir]);
    expect(r.errors.map(formatManifestError)).toEqual([
      `${join(dir, 'big.yaml')}: 5.0 MiB is more than the 4 MiB a manifest file may have (raise it with --max-manifest-size)`,
    ]);
    expect(r.objects.map((o) => o.metadata.name)).toEqual(['small']);
    // raised: read
    const raised = await loadManifests([dir], {
      maxFileBytes: 8 * 1024 * 1024,
      maxTotalBytes: 16 * 1024 * 1024,
    });
    expect(raised.errors).toEqual([]);
    rmSync(join(dir, 'big.yaml'));
  });

  it('refuses manifests adding up to more than --max-manifests-total', async () => {
    const r = await loadManifests([dir], { maxFileBytes: 4096, maxTotalBytes: 100 });
    expect(r.errors.map(formatManifestError)).toEqual([
      `${join(dir, 'small.yaml')}: the manifests add up to more than 100 bytes with this file (raise it with --max-manifests-total); this file and the rest were not read`,
    ]);
  });

  it('says "nesting too deep", not "Maximum call stack size exceeded", for flow and block nesting', async () => {
    const flow = `apiVersion: mailroute.io/v1alpha1\nkind: MailDomain\nmetadata: {name: deep}\nspec: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`;
    const block = `apiVersion: mailroute.io/v1alpha1\nkind: MailDomain\nmetadata: {name: deep}\nspec:\n${Array.from({ length: 1500 }, (_, i) => `${'  '.repeat(i + 1)}a${i}:\n`).join('')}`;
    for (const [name, text] of [
      ['flow.yaml', flow],
      ['block.yaml', block],
    ] as const) {
      const d = join(root, `deep-${name}`);
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, name), text);
      const r = await loadManifests([d]);
      expect(r.errors.length, name).toBeGreaterThan(0);
      for (const e of r.errors) {
        expect(formatManifestError(e), name).toMatch(
          /: line \d+: nesting too deep: a manifest may nest at most 64 levels/,
        );
        expect(e.message).not.toMatch(/call stack/);
      }
    }
  });
});
