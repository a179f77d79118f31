// Who may use the admin API (pure). The API has no accounts: it trusts the loopback interface it listens on, and a
// browser on the same machine must not be able to use it (docs/relay.md, "Admin API"):
// - DNS rebinding: a page on attacker.example whose name later resolves to 127.0.0.1 sends `Host: attacker.example`.
//   Only an IP literal, `localhost` or the configured --admin host name is accepted as Host (421 otherwise).
// - Cross-origin requests: a browser sends Origin on every cross-origin request and on every POST/DELETE, and
//   Sec-Fetch-Site on every request; a command-line client sends neither. Any Origin, or a Sec-Fetch-Site other
//   than "none" (typed into the address bar), is refused (403).
// - State changes (POST, DELETE) need the token of the token file in the spool folder (`Authorization: Bearer`),
//   which a web page cannot read (401 without it, 403 with a wrong one).
import { timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { clip } from '../../lib/one-line.ts';

export interface AdminRequest {
  method: string;
  /** Header values as node:http gives them (lowercase names). */
  headers: Record<string, string | string[] | undefined>;
}

export type AdminGuardVerdict = { ok: true } | { ok: false; status: 401 | 403 | 421; error: string };

/** The host name of a Host header ("127.0.0.1:9091" -> "127.0.0.1", "[::1]:9091" -> "::1"), lowercased. */
export function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end < 0 ? h : h.slice(1, end);
  }
  const colon = h.lastIndexOf(':');
  return colon < 0 ? h : h.slice(0, colon);
}

/** Whether a Host header names this listener: an IP literal, localhost, or the --admin host name. */
export function hostAllowed(host: string | undefined, listenHost: string): boolean {
  if (host === undefined || host === '') return false;
  const name = hostName(host).replace(/\.$/, '');
  if (name === 'localhost' || isIP(name) !== 0) return true;
  return (
    name ===
    listenHost
      .trim()
      .toLowerCase()
      .replace(/^\[|\]$/g, '')
  );
}

const first = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

function tokenMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!m?.[1]) return false;
  const a = Buffer.from(m[1]);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

const STATE_CHANGING = new Set(['POST', 'DELETE', 'PUT', 'PATCH']);

export function guardAdminRequest(
  req: AdminRequest,
  opts: { listenHost: string; token: string },
): AdminGuardVerdict {
  const host = first(req.headers['host']);
  if (!hostAllowed(host, opts.listenHost)) {
    return {
      ok: false,
      status: 421,
      error: `Host ${JSON.stringify(clip(host ?? '', 100))} is not this admin API: use its address (or localhost)`,
    };
  }
  const origin = first(req.headers['origin']);
  if (origin !== undefined) {
    return {
      ok: false,
      status: 403,
      error: `cross-origin request refused (Origin ${JSON.stringify(clip(origin, 100))})`,
    };
  }
  const site = first(req.headers['sec-fetch-site']);
  if (site !== undefined && site !== 'none') {
    return {
      ok: false,
      status: 403,
      error: `browser request refused (Sec-Fetch-Site ${JSON.stringify(clip(site, 100))})`,
    };
  }
  if (STATE_CHANGING.has(req.method.toUpperCase())) {
    const auth = first(req.headers['authorization']);
    if (auth === undefined) {
      return {
        ok: false,
        status: 401,
        error: `${req.method} needs the admin token: Authorization: Bearer <the token file admin.token in the spool folder>`,
      };
    }
    if (!tokenMatches(auth, opts.token)) return { ok: false, status: 403, error: 'wrong admin token' };
  }
  return { ok: true };
}
