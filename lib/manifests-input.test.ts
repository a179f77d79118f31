// What a manifest file's bytes may be (empty while `kubectl ... > f.yaml` runs, UTF-16 from PowerShell, Latin-1), and
// a Secret declared twice: each is an error naming the file, through the loader the relay and `mailroute check` share.
import { execFile } from 'node:child_process';
import { isUtf8 } from 'node:buffer';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatManifestError, mergeParsed, parseManifestText } from '../routing/parse.ts';
import {
  decodeManifestBytes,
  firstInvalidUtf8,
  isTransientReadError,
  loadAndCompile,
  loadManifests,
} from './manifests.ts';

const root = mkdtempSync(join(tmpdir(), 'mailroute-manifest-input-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const domain = (name: string): string => `apiVersion: mailroute.io/v1alpha1
kind: MailDomain
metadata: {name: ${name}}
spec: {domain: ${name}.example, servers: [{name: a, host: mail.example}]}
`;
const secret = (name: string, password: string): string =>
  `apiVersion: v1\nkind: Secret\nmetadata: {name: ${name}, labels: {mailroute.io/smtp-auth: "true"}}\nstringData: {username: u, password: ${password}}\n`;

/** A folder holding a.yaml (a valid MailDomain) and bad.yaml with `bytes`; the error lines of loading it. */
async function loadWith(bytes: Buffer | string): Promise<{ dir: string; lines: string[]; names: string[] }> {
  const dir = mkdtempSync(join(root, 'dir-'));
  writeFileSync(join(dir, 'a.yaml'), domain('a'));
  writeFileSync(join(dir, 'bad.yaml'), bytes);
  const r = await loadManifests([dir]);
  return { dir, lines: r.errors.map(formatManifestError), names: r.objects.map((o) => o.metadata.name) };
}

describe('an empty manifest file is an error, not a file with no objects', () => {
  it.each([
    ['zero bytes', ''],
    ['whitespace only', ' \n\n\t\n'],
    ['a UTF-8 BOM and blank lines', '\uFEFF\n\n'],
  ])('%s: an error naming the file', async (_, text) => {
    const { dir, lines, names } = await loadWith(text);
    expect(lines).toEqual([`${join(dir, 'bad.yaml')}: empty: delete the file to remove its objects`]);
    expect(names).toEqual(['a']);
  });

  it('a file of comments only is still a file with no objects (written on purpose)', async () => {
    const { lines } = await loadWith('# nothing here yet\n');
    expect(lines).toEqual([]);
  });
});

describe('encodings', () => {
  const utf16le = (s: string): Buffer =>
    Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(s, 'utf16le')]);
  const utf16be = (s: string): Buffer =>
    Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(s, 'utf16le').swap16()]);

  it.each([
    ['UTF-16 LE with a BOM (PowerShell 5 `>`, Notepad "Unicode")', utf16le(domain('b'))],
    ['UTF-16 BE with a BOM', utf16be(domain('b'))],
    ['UTF-16 LE without a BOM (NUL bytes)', Buffer.from(domain('b'), 'utf16le')],
  ])('%s: "save it as UTF-8"', async (_, bytes) => {
    const { dir, lines, names } = await loadWith(bytes);
    expect(lines).toEqual([`${join(dir, 'bad.yaml')}: UTF-16 text: save it as UTF-8`]);
    expect(names).toEqual(['a']);
  });

  it('Latin-1 bytes: "not valid UTF-8" with the byte offset, not U+FFFD in a field error', async () => {
    const text = `${domain('b')}# Zürich\n`;
    const bytes = Buffer.from(text, 'latin1');
    const { dir, lines } = await loadWith(bytes);
    expect(lines).toEqual([`${join(dir, 'bad.yaml')}: not valid UTF-8 (byte offset ${text.indexOf('ü')})`]);
  });

  it('a UTF-8 BOM is fine', async () => {
    const { lines, names } = await loadWith(`\uFEFF${domain('b')}`);
    expect(lines).toEqual([]);
    expect(names).toEqual(['a', 'b']);
  });

  it.each<[string, number[], number | undefined]>([
    ['ASCII', [0x61, 0x62], undefined],
    ['2, 3 and 4 byte sequences', [0xc3, 0xbc, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x93, 0xa7], undefined],
    ['a Latin-1 byte', [0x61, 0xfc, 0x61], 1],
    ['an overlong NUL (C0 80)', [0x61, 0xc0, 0x80], 1],
    ['an overlong 3-byte sequence (E0 80 80)', [0xe0, 0x80, 0x80], 0],
    ['a surrogate (ED A0 80)', [0x61, 0x61, 0xed, 0xa0, 0x80], 2],
    ['above U+10FFFF (F4 90 80 80)', [0xf4, 0x90, 0x80, 0x80], 0],
    ['F5', [0xf5, 0x80, 0x80, 0x80], 0],
    ['a sequence cut short at the end', [0x61, 0xe2, 0x82], 1],
    ['a continuation byte alone', [0x80], 0],
  ])('firstInvalidUtf8: %s', (_, bytes, want) => {
    expect(firstInvalidUtf8(Uint8Array.from(bytes))).toBe(want);
  });

  it('firstInvalidUtf8 agrees with node:buffer isUtf8 on random bytes, and its prefix is valid', () => {
    let seed = 7;
    const rand = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    for (let n = 0; n < 5000; n++) {
      const bytes = Buffer.from(Array.from({ length: rand() % 8 }, () => rand() % 256));
      const at = firstInvalidUtf8(bytes);
      expect(at === undefined, bytes.toString('hex')).toBe(isUtf8(bytes));
      if (at !== undefined) expect(isUtf8(bytes.subarray(0, at)), bytes.toString('hex')).toBe(true);
    }
  });

  it('decodeManifestBytes passes UTF-8 text through', () => {
    expect(decodeManifestBytes(Buffer.from('a: ü\n'))).toEqual({ text: 'a: ü\n' });
  });
});

describe('a Secret declared twice is an error naming both files, as for every other kind', () => {
  it('in two files (auth.bak.yaml sorts before auth.yaml): both named, the load fails', async () => {
    const dir = mkdtempSync(join(root, 'secrets-'));
    writeFileSync(join(dir, 'auth.bak.yaml'), secret('smtp', 'old-password'));
    writeFileSync(join(dir, 'auth.yaml'), secret('smtp', 'new-password'));
    const r = await loadAndCompile([dir]);
    expect(r.errorLines).toEqual([
      `${join(dir, 'auth.yaml')}: Secret/smtp: declared twice (also in ${join(dir, 'auth.bak.yaml')})`,
    ]);
  });

  it('twice in one file', () => {
    const r = parseManifestText(`${secret('smtp', 'a')}---\n${secret('smtp', 'b')}`, 'auth.yaml');
    expect(r.errors.map(formatManifestError)).toEqual([
      'auth.yaml: Secret/smtp: declared twice in this file',
    ]);
    expect(r.secrets).toHaveLength(1);
  });

  it('the same name in two namespaces is two Secrets', () => {
    const other = secret('smtp', 'b').replace('metadata: {', 'metadata: {namespace: mail, ');
    const r = mergeParsed([
      parseManifestText(secret('smtp', 'a'), 'a.yaml'),
      parseManifestText(other, 'b.yaml'),
    ]);
    expect(r.errors).toEqual([]);
    expect(r.secrets.map((s) => `${s.namespace}/${s.name}`)).toEqual(['default/smtp', 'mail/smtp']);
  });

  it('`mailroute check -f` reports it (exit 1)', async () => {
    const dir = mkdtempSync(join(root, 'check-'));
    mkdirSync(join(dir, 'mail'));
    writeFileSync(join(dir, 'mail', 'domain.yaml'), domain('a'));
    writeFileSync(join(dir, 'mail', 'auth.bak.yaml'), secret('smtp', 'old-password'));
    writeFileSync(join(dir, 'mail', 'auth.yaml'), secret('smtp', 'new-password'));
    const repo = join(import.meta.dirname, '..');
    const out = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(
        join(repo, 'node_modules', '.bin', 'node'),
        [join(repo, 'bin', 'mailroute.js'), 'check', '-f', join(dir, 'mail')],
        { timeout: 30_000 },
        (err, stdout) =>
          resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout }),
      );
    });
    expect(out.stdout).toContain(
      `${join(dir, 'mail', 'auth.yaml')}: Secret/smtp: declared twice (also in ${join(dir, 'mail', 'auth.bak.yaml')})\n`,
    );
    expect(out.code).toBe(1);
  });
});

describe('which read errors a retry may cure', () => {
  const err = (code: string): NodeJS.ErrnoException => Object.assign(new Error(code), { code });
  it.each([
    ['EACCES', true],
    ['EPERM', true],
    ['EMFILE', true],
    ['ENFILE', true],
    ['EIO', true],
    ['ENOENT', false],
    ['ELOOP', false],
    ['ENOTDIR', false],
  ])('%s: %s', (code, want) => {
    expect(isTransientReadError(err(code))).toBe(want);
  });
  it('not an errno error: no', () => {
    expect(isTransientReadError(new Error('x'))).toBe(false);
    expect(isTransientReadError('x')).toBe(false);
  });
});
