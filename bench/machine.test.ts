import { describe, expect, it } from 'vitest';
import { ext4Journal, journalWarning } from './machine.ts';

describe('ext4Journal', () => {
  it.each([
    ['ext4', '/dev/vda', [], false],
    ['ext4', '/dev/loop0', ['loop0-8'], true],
    ['ext4', '/dev/vda', ['loop0-8', 'vdb-8'], false],
    ['ext4', '/dev/vda1', ['vda-8'], false],
    ['tmpfs', 'tmpfs', [], undefined],
    ['xfs', '/dev/vdb', ['vdb-8'], undefined],
  ] as const)('%s on %s with jbd2 %j -> %s', (fstype, source, entries, want) => {
    expect(ext4Journal(fstype, source, entries)).toBe(want);
  });
});

describe('journalWarning', () => {
  it.each([
    [false, true],
    [true, false],
    [undefined, false],
    [null, false],
  ])('journal %s: warns %s', (journal, warns) => {
    const w = journalWarning(journal, '/tmp');
    expect(w !== undefined).toBe(warns);
    if (w !== undefined) {
      expect(w).toContain('/tmp');
      expect(w).toContain('without a journal');
      expect(w).toContain('TMPDIR');
    }
  });

  it('names the folder only when given one', () => {
    expect(journalWarning(false)).toMatch(/^The queues and spools are on ext4 without a journal/);
  });
});
