import { describe, expect, it } from 'vitest';
import { ext4Journal } from './machine.ts';

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
