// Runs docs/gitops/argocd-health.lua the way Argo CD does: `obj` is a global table holding the live object, and the
// chunk returns {status, message}. A real Lua interpreter runs it (lua5.4; lua5.1 too when installed, since Argo CD
// embeds gopher-lua, a Lua 5.1). The object goes in as a Lua table literal.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const HEALTH_LUA = fileURLToPath(new URL('../../docs/gitops/argocd-health.lua', import.meta.url));

export function findLua(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter).concat(['/usr/bin', '/usr/local/bin'])) {
    if (dir !== '' && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** A Lua string literal: printable ASCII as is, everything else as decimal byte escapes (valid in 5.1 and 5.4). */
function luaString(s: string): string {
  let out = '"';
  for (const b of Buffer.from(s, 'utf8')) {
    if (b === 0x22 || b === 0x5c) out += `\\${String.fromCharCode(b)}`;
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += `\\${b}`;
  }
  return out + '"';
}

/** JSON value -> Lua table constructor (arrays 1-based, as Argo CD converts them). */
export function toLua(v: unknown): string {
  if (v === null || v === undefined) return 'nil';
  if (typeof v === 'string') return luaString(v);
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : 'nil';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (Array.isArray(v)) return `{${v.map(toLua).join(', ')}}`;
  if (typeof v === 'object') {
    return `{${Object.entries(v as Record<string, unknown>)
      .map(([k, x]) => `[${luaString(k)}] = ${toLua(x)}`)
      .join(', ')}}`;
  }
  throw new Error(`cannot convert ${typeof v} to Lua`);
}

export interface Health {
  status: string;
  message: string;
}

/** Runs the health check on one object with the given interpreter. */
export function argoHealth(lua: string, obj: unknown, script = HEALTH_LUA): Promise<Health> {
  const program =
    `obj = ${toLua(obj)}\n` +
    `local hs = dofile(${luaString(script)})\n` +
    `io.write(tostring(hs.status), "\\n", tostring(hs.message))\n`;
  return new Promise((resolve, reject) => {
    execFile(lua, ['-'], { timeout: 10_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${lua} failed: ${stderr || err.message}`));
      const [status = '', ...message] = stdout.split('\n');
      resolve({ status, message: message.join('\n') });
    }).stdin!.end(program);
  });
}
