import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fingerprint } from './watcher.ts';

const root = mkdtempSync(join(tmpdir(), 'mailroute-watcher-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('fingerprint', () => {
  it('lists the folder as the loader reads it: each folder once (a loop was walked 8 levels deep every 500 ms), a loop as the loader reports it', async () => {
    mkdirSync(join(root, 'sub'));
    writeFileSync(join(root, 'a.yaml'), 'a');
    writeFileSync(join(root, 'sub', 'b.yaml'), 'b');
    writeFileSync(join(root, 'notes.txt'), 'not a manifest');
    symlinkSync('..', join(root, 'sub', 'up'));
    symlinkSync('sub', join(root, 'twin'));
    const lines = (await fingerprint(root)).split('\n').slice(1);
    // each manifest file once (inode:size:mtime:ctime), then the two links as the loader reports them (so a reload tells the admin)
    expect(lines.map((l) => l.split('\u0000'))).toEqual([
      [join(root, 'a.yaml'), expect.stringMatching(/^\d+:1:[\d.]+:[\d.]+$/) as unknown],
      [join(root, 'sub', 'b.yaml'), expect.stringMatching(/^\d+:1:[\d.]+:[\d.]+$/) as unknown],
      [join(root, 'sub', 'up'), `the folder ${root} again (a symbolic link): not read twice`],
      [join(root, 'twin'), `the folder ${join(root, 'sub')} again (a symbolic link): not read twice`],
    ]);
  });

  it('changes when a named pipe is dropped into the folder (the reload then reports it)', async () => {
    const before = await fingerprint(root);
    execFileSync('mkfifo', [join(root, 'pipe.yaml')]);
    const after = await fingerprint(root);
    expect(after).not.toBe(before);
    expect(after).toContain(`${join(root, 'pipe.yaml')}\u0000a named pipe, not a manifest file: not read`);
    rmSync(join(root, 'pipe.yaml'));
  });

  it('changes when a file in the folder changes', async () => {
    const before = await fingerprint(root);
    writeFileSync(join(root, 'sub', 'b.yaml'), 'bb');
    expect(await fingerprint(root)).not.toBe(before);
  });
});
