// The spool folder must be writable by the relay's user. Volumes that ignore the pod's fsGroup (hostPath, local
// PersistentVolumes, some CSI drivers) come up owned by root, and mkdir of <spool>/queue then fails with a bare
// EACCES. This turns that into an error an admin can act on: what the folder's owner and mode are, which user the
// relay runs as, and the chart value that prepares the folder (relay.spool.volumePermissions.enabled).
import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';

export interface SpoolOwner {
  readonly uid: number;
  readonly gid: number;
  readonly mode: number;
}

/** The message for a spool folder the relay may not write (pure; `owner` undefined when stat failed too). */
export function unwritableSpoolMessage(
  dir: string,
  owner: SpoolOwner | undefined,
  self: { uid: number; gid: number },
  cause: string,
): string {
  const found =
    owner === undefined
      ? 'its owner could not be read'
      : `it is owned by ${owner.uid}:${owner.gid} with mode ${(owner.mode & 0o7777).toString(8).padStart(4, '0')}`;
  return (
    `spool: cannot write the spool folder ${dir} (${cause}): ${found}, and the relay runs as ${self.uid}:${self.gid}. ` +
    'The volume ignores the pod fsGroup (hostPath and local PersistentVolumes do): with the Helm chart set ' +
    'relay.spool.volumePermissions.enabled=true, or make the folder writable by the relay user'
  );
}

/**
 * The message for a spool folder on a read-only file system (EROFS): ownership has nothing to do with it. Either the
 * volume is mounted read-only, or the kernel remounted it read-only after an I/O error (ext4 errors=remount-ro), in
 * which case a restart of the container keeps the read-only mount: the pod must be recreated, after the disk is checked.
 */
function readOnlySpoolMessage(dir: string, cause: string): string {
  return (
    `spool: cannot write the spool folder ${dir} (${cause}): its file system is read-only. Either the volume is ` +
    'mounted read-only (check readOnly in the pod spec and the PersistentVolume), or the kernel made it read-only ' +
    'after an I/O error (the node\'s kernel log says so: "Remounting filesystem read-only"). Then check and repair ' +
    'the disk and delete the pod (a container restart keeps the read-only mount); the messages on it are not lost'
  );
}

function isPermissionError(err: unknown): err is NodeJS.ErrnoException {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'EACCES' || code === 'EPERM' || code === 'EROFS';
}

/** Runs `op` (the spool's first write); a permission error becomes the message above, any other error passes. */
export async function explainUnwritable<T>(dir: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (!isPermissionError(err)) throw err;
    let st: Stats | undefined;
    try {
      st = await stat(dir);
    } catch {
      st = undefined;
    }
    const cause = `${err.code ?? 'EACCES'} ${err.syscall ?? ''}`.trim();
    if (err.code === 'EROFS') throw new Error(readOnlySpoolMessage(dir, cause), { cause: err });
    const self = { uid: process.getuid?.() ?? -1, gid: process.getgid?.() ?? -1 };
    throw new Error(unwritableSpoolMessage(dir, st, self, cause), {
      cause: err,
    });
  }
}
