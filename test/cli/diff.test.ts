// `mailroute diff -f OLD --to NEW` through the real bin: exit codes like diff(1) (0 no change, 1 changes, 2 error),
// invalid manifests on either side named by file and field, the JSON shape tools read, and the markdown comment.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { unreachableKubeconfig } from '../support/kubeconfig.ts';
import { freePort } from '../support/net.ts';

const root = join(import.meta.dirname, '..', '..');
const nodeBin = join(root, 'node_modules', '.bin', 'node');
const mailroute = join(root, 'bin', 'mailroute.js');
const ex = (name: string): string => join(root, 'examples', name);
const AT = ['--at', '2026-06-01T00:00:00Z'];

function run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(nodeBin, [mailroute, 'diff', ...args], { cwd: root, timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

/** diff from the dual-test-users-exchange example to dual-new-primary-copy-old at AT, with `args`. */
const runMigration = (...args: string[]) =>
  run('-f', ex('dual-test-users-exchange'), '--to', ex('dual-new-primary-copy-old'), ...args, ...AT);

const tmp = mkdtempSync(join(tmpdir(), 'mailroute-diff-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const p = join(tmp, name);
  writeFileSync(p, text);
  return p;
}

describe('mailroute diff (two manifest sets)', () => {
  it('exit 0 and one summary line when nothing changes', async () => {
    const r = await run('-f', ex('demo'), '--to', ex('demo'));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').at(-1)).toBe('no routing changes (1 domain unchanged)');
  });

  it('exit 1 with the changes per domain, and recipients legs before and after', async () => {
    const r = await runMigration('--recipient', 'alice@example.com');
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('example.com: changed\n');
    expect(r.stdout).toContain('  primary: exchange -> zoho\n');
    expect(r.stdout).toContain('  dual.scope: TestRecipients -> All\n');
    expect(r.stdout).toContain(
      '  server legacy: added (host=mail.legacy.example port=587 mx=false tls=Required authSecretRef=default/legacy-smtp maxConnections=4 maxRecipientsPerTransaction=50)',
    );
    expect(r.stdout).toContain(
      '    - bob@example.com -> bob@example.zohomail.example (keeps the primary copy, expires 2026-12-31T00:00:00Z; mail/bob)',
    );
    expect(r.stdout).toContain(
      'recipient alice@example.com: changed\n' +
        '  before: primary exchange -> alice@example.com (Notify), copy zoho -> alice@example.zohomail.example (Suppress)\n' +
        '  after:  primary zoho -> alice@example.com (Notify), copy legacy -> alice@example.com (Suppress)\n',
    );
  });

  it('-o json: the documented shape', async () => {
    const r = await runMigration('-o', 'json', '--within', '365d');
    expect(r.code).toBe(1);
    const j = JSON.parse(r.stdout) as Record<string, unknown> & {
      domains: { domain: string; change: string; expiring: unknown[]; fields: unknown[] }[];
    };
    expect(Object.keys(j)).toEqual([
      'format',
      'before',
      'after',
      'at',
      'expiringWithinSeconds',
      'changed',
      'unchangedDomains',
      'domains',
      'recipients',
    ]);
    expect(j).toMatchObject({
      format: 'mailroute.io/routing-diff/v1',
      at: '2026-06-01T00:00:00.000Z',
      expiringWithinSeconds: 365 * 86400,
      changed: true,
      unchangedDomains: 0,
      recipients: [],
    });
    expect(j.domains.map((d) => [d.domain, d.change])).toEqual([['example.com', 'changed']]);
    expect(j.domains[0]!.fields).toContainEqual({ field: 'primary', before: 'exchange', after: 'zoho' });
  });

  it('-o markdown: a pull-request comment', async () => {
    const r = await runMigration('-o', 'markdown', '--recipient', 'alice@example.com');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^### mailroute routing diff\n/);
    expect(r.stdout).toContain('| primary | `exchange` | `zoho` |');
    expect(r.stdout).toContain('<details><summary>test recipients removed (2)</summary>');
    expect(r.stdout).toContain(
      '| `alice@example.com` | primary exchange -> alice@example.com (Notify), copy zoho -> alice@example.zohomail.example (Suppress) |',
    );
  });

  it.each([
    ['the new side', (bad: string) => ['-f', ex('demo'), '--to', bad], 'new (--to)'],
    ['the old side', (bad: string) => ['-f', bad, '--to', ex('demo')], 'old (-f)'],
  ])('exit 2 naming the file and field when %s is invalid', async (_name, args, side) => {
    const bad = write(
      'bad.yaml',
      'apiVersion: mailroute.io/v1alpha1\nkind: DeliveryPolicy\nmetadata: {name: p}\nspec: {domainRef: {name: d}, mode: Sideways, primary: a}\n',
    );
    const r = await run(...args(bad));
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `mailroute diff: ${side} manifests are invalid:\n  ${bad}: DeliveryPolicy/p: spec.mode: must be one of Direct, Dual, Split, got "Sideways"\n`,
    );
  });

  it.each([
    [['-f', ex('demo')], '--to NEW... is required'],
    [['--to', ex('demo')], '-f PATH is required'],
    [['--cluster', '-f', ex('demo'), '--to', ex('demo')], '--to is not used'],
    [['-f', ex('demo'), '--to', ex('demo'), '--context', 'x'], '--context needs --cluster'],
    [['-f', ex('demo'), '--to', ex('demo'), '--within', 'soon'], '--within: expected a duration'],
    [['-f', ex('demo'), '--to', ex('demo'), '-o', 'yaml'], '-o must be text, markdown or json'],
  ])('usage errors exit 2: %j', async (args, message) => {
    const r = await run(...args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
  });

  it('--cluster with an API server that does not answer: a clear error (exit 2)', async () => {
    const dead = write('dead-kubeconfig', unreachableKubeconfig(`https://127.0.0.1:${await freePort()}`));
    const r = await run('--cluster', '-f', ex('demo'), '--kubeconfig', dead);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      /^mailroute diff: reading ConfigMap mailroute-system\/mailroute-routing \(context dead\): fetch failed: ECONNREFUSED\n$/,
    );
  });

  it('a folder that does not exist is an error, not an empty side', async () => {
    const r = await run('-f', join(tmp, 'missing'), '--to', ex('demo'));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${join(tmp, 'missing')}: cannot read: ENOENT`);
  });
});
