// The admin token file: <spool>/admin.token, mode 0600, a new random token at every start (the pattern of Docker's
// and Jupyter's local tokens). Whoever can read the spool folder can already read and delete the mail in it, so the
// token grants nothing more; a web page cannot read it.
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';

const ADMIN_TOKEN_FILE = 'admin.token';

export function adminTokenPath(spoolDir: string): string {
  return join(spoolDir, ADMIN_TOKEN_FILE);
}

/** Writes a new token to `path` (mode 0600, fsynced, renamed into place) and returns it. */
export async function createAdminToken(path: string): Promise<string> {
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
