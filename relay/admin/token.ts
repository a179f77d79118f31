// The admin token file: <spool>/admin.token, mode 0600, a new random token at every start (the pattern of Docker's
// and Jupyter's local tokens). Whoever can read the spool folder can already read and delete the mail in it, so the
// token grants nothing more; a web page cannot read it.
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { isNoSpace } from '../../lib/errors.ts';

const ADMIN_TOKEN_FILE = 'admin.token';

export function adminTokenPath(spoolDir: string): string {
  return join(spoolDir, ADMIN_TOKEN_FILE);
}

/** Writes a new token to `path` (mode 0600, fsynced, renamed into place) and returns it. */
async function createAdminToken(path: string): Promise<string> {
  const token = randomBytes(32).toString('base64url');
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  await rm(tmp, { force: true });
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(`${token}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await chmod(tmp, 0o600); // the umask cannot widen it, but a pre-existing ACL default might
  await rename(tmp, path);
  return token;
}

/**
 * createAdminToken, but on a full volume (ENOSPC, EDQUOT) the token of the last start is kept when its file is still
 * there (`mailroute queue` reads it), or one held in memory only: a relay that cannot write 45 bytes still starts
 * and delivers its queue, which is what frees the volume. `warn` says which.
 */
export async function startAdminToken(path: string, warn: (message: string) => void): Promise<string> {
  try {
    return await createAdminToken(path);
  } catch (err) {
    if (!isNoSpace(err)) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    await rm(`${path}.tmp-${process.pid}`, { force: true }).catch(() => undefined);
    const kept = await readAdminToken(path);
    if (kept.ok) {
      warn(`${path}: the volume is full (${code}): the token of the last start is kept`);
      return kept.token;
    }
    warn(
      `${path}: the volume is full (${code}): the admin API's token is held in memory only, so no client can read it until a restart with room`,
    );
    return randomBytes(32).toString('base64url');
  }
}

/** The token in a token file, or an error message that names the file. */
export async function readAdminToken(
  path: string,
): Promise<{ ok: true; token: string } | { ok: false; error: string }> {
  try {
    const token = (await readFile(path, 'utf8')).trim();
    if (!/^\S{16,}$/.test(token)) return { ok: false, error: `${path}: not an admin token file` };
    return { ok: true, token };
  } catch (err) {
    return { ok: false, error: `${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
  }
}
