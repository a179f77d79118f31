import { describe, expect, it } from 'vitest';
import { explainUnwritable, unwritableSpoolMessage } from './writable.ts';

describe('unwritableSpoolMessage', () => {
  it.each([
    [{ uid: 0, gid: 0, mode: 0o40755 }, 'it is owned by 0:0 with mode 0755, and the relay runs as 1000:1000'],
    [{ uid: 0, gid: 1000, mode: 0o2750 }, 'it is owned by 0:1000 with mode 2750'],
    [undefined, 'its owner could not be read'],
  ])('names the owner %o and the fix', (owner, want) => {
    const msg = unwritableSpoolMessage(
      '/var/spool/mailroute',
      owner,
      { uid: 1000, gid: 1000 },
      'EACCES mkdir',
    );
    expect(msg).toContain('/var/spool/mailroute (EACCES mkdir)');
    expect(msg).toContain(want);
    expect(msg).toContain('relay.spool.volumePermissions.enabled=true');
  });
});

describe('explainUnwritable', () => {
  it('passes other errors through unchanged', async () => {
    const err = Object.assign(new Error('disk on fire'), { code: 'EIO' });
    await expect(explainUnwritable('/x', () => Promise.reject(err))).rejects.toBe(err);
  });

  it('explains EACCES and keeps the cause', async () => {
    const err = Object.assign(new Error('denied'), { code: 'EACCES', syscall: 'mkdir' });
    const got = await explainUnwritable('/nonexistent-spool', () => Promise.reject(err)).catch(
      (e: unknown) => e,
    );
    expect(got).toBeInstanceOf(Error);
    expect((got as Error).message).toMatch(
      /cannot write the spool folder \/nonexistent-spool \(EACCES mkdir\)/,
    );
    expect((got as Error).cause).toBe(err);
  });
});

describe('a read-only spool file system (EROFS)', () => {
  it('says the file system is read-only and how to recover, not who owns the folder', async () => {
    const err = Object.assign(new Error('read-only file system'), { code: 'EROFS', syscall: 'open' });
    const got = await explainUnwritable('/spool', () => Promise.reject(err)).catch((e: unknown) => e);
    expect(got).toBeInstanceOf(Error);
    const msg = (got as Error).message;
    expect(msg).toContain('cannot write the spool folder /spool (EROFS open): its file system is read-only');
    expect(msg).toContain('delete the pod');
    expect(msg).not.toContain('fsGroup');
    expect((got as Error).cause).toBe(err);
  });
});
