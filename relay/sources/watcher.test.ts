import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fingerprint } from './watcher.ts';

const root = mkdtempSync(join(tmpdir(), 'mailroute-watcher-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('fingerprint', () => {
  it('walks a folder once: a symbolic link loop is not walked down again (it was, 8 levels deep, every 500 ms)', async () => {
    mkdirSync(join(root, 'sub'));
    writeFileSync(join(root, 'a.yaml'), 'a');
    writeFileSync(join(root, 'sub', 'b.yaml'), 'b');
    symlinkSync('..', join(root, 'sub', 'up'));
    symlinkSync('sub', join(root, 'twin'));
    const lines = (await fingerprint(root)).split('\n').slice(1);
    expect(lines.map((l) => l.split('\u0000')[0])).toEqual([
      join(root, 'a.yaml'),
      join(root, 'sub', 'b.yaml'),
    ]);
  });

  it('changes when a file in the folder changes', async () => {
    const before = await fingerprint(root);
    writeFileSync(join(root, 'sub', 'b.yaml'), 'bb');
    expect(await fingerprint(root)).not.toBe(before);
  });
});
