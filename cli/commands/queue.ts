// `mailroute queue list|show ID|flush|reroute ID|--all|delete ID [--admin HOST:PORT] [--spool DIR | --token-file FILE] [-o json]`: a
// client of the relay's admin API (relay/admin/server.ts). --admin also reads MAILROUTE_ADMIN; default 127.0.0.1:9091.
// flush, reroute and delete send the token of the relay's token file (<spool>/admin.token; --spool and --token-file also read
// MAILROUTE_SPOOL and MAILROUTE_TOKEN_FILE).
import { parseArgs } from 'node:util';
import { adminTokenPath, readAdminToken } from '../../relay/admin/token.ts';
import type { LegView, MessageView, QueueListView } from '../../relay/admin/view.ts';
import type { ParityView } from '../../contract/relay-parity.ts';

export interface QueueIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env: Record<string, string | undefined>;
  fetch: typeof fetch;
  now: () => Date;
}

const defaultIo: QueueIo = {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
  env: process.env,
  fetch: (...a) => fetch(...a),
  now: () => new Date(),
};

export const QUEUE_USAGE = `usage: mailroute queue <list|show ID|stats|flush|reroute ID|--all|delete ID> [--admin HOST:PORT] [--spool DIR] [-o json]

  list          every queued message, one line per recipient with the state of each leg
  show ID       one message: every leg with attempts, next attempt and last reply
  stats         queue counts, and parity while dual: per DeliveryPolicy and TestRecipient, primaries delivered,
                copies delivered, suppressed (by reason) and pending, and the p95 copy lag
  flush         retry every deferred leg now
  reroute ID    re-plan the message's open legs with the current routing table (delivered legs stay delivered)
  reroute --all the same for every queued message
  delete ID     drop a message without delivering it (no DSN)

flags:
  --admin HOST:PORT   the relay's admin API (default 127.0.0.1:9091, env MAILROUTE_ADMIN)
  --spool DIR         the relay's spool folder, whose admin.token flush, reroute and delete send (default ./spool,
                      env MAILROUTE_SPOOL)
  --token-file FILE   the token file itself (env MAILROUTE_TOKEN_FILE), instead of DIR/admin.token
  -o json             print the API's JSON
`;

/** "1h02m", "3m05s", "12s" */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${String(h % 24).padStart(2, '0')}h`;
}

/** GET /queue/stats: the engine's DeliveryStats and the parity counters. */
export interface StatsView {
  messages: number;
  pending: number;
  deferred: number;
  oldestAgeSeconds: number;
  parity?: ParityView;
}

/** `mailroute queue stats`: the queue in one line, then one parity line per policy and per TestRecipient. */
export function renderStats(v: StatsView): string {
  const lines = [
    `messages ${v.messages} (pending ${v.pending}, deferred ${v.deferred}), oldest ${formatAge(v.oldestAgeSeconds * 1000)}`,
  ];
  const rows: string[][] = [];
  const row = (what: string, name: string, p: ParityView['policies'][string]): void => {
    const reasons = Object.entries(p.suppressedBy)
      .map(([r, n]) => `${r} ${n}`)
      .join(', ');
    rows.push([
      what,
      name,
      String(p.primaryDelivered),
      String(p.copiesDelivered),
      p.copiesSuppressed === 0 ? '0' : `${p.copiesSuppressed} (${reasons})`,
      String(p.copiesPending),
      p.lagP95 ?? '-',
    ]);
  };
  for (const [name, p] of Object.entries(v.parity?.policies ?? {})) row('DeliveryPolicy', name, p);
  for (const [name, p] of Object.entries(v.parity?.testRecipients ?? {})) row('TestRecipient', name, p);
  if (rows.length === 0) return `${lines[0]}\nparity: no copies yet\n`;
  const header = ['KIND', 'NAME', 'PRIMARY', 'COPIES', 'SUPPRESSED', 'PENDING', 'LAG P95'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)) + 2);
  for (const r of [header, ...rows])
    lines.push(
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('')
        .trimEnd(),
    );
  return `${lines.join('\n')}\n`;
}

function pad(s: string, n: number): string {
  return s.length >= n ? `${s} ` : s.padEnd(n);
}

export function renderList(v: QueueListView, now: Date): string {
  if (v.messages.length === 0)
    return v.total === 0 ? 'queue is empty\n' : `no message listed (${v.total} queued)\n`;
  const lines: string[] = [];
  const fromW = Math.min(32, Math.max(4, ...v.messages.map((m) => (m.mailFrom || '<>').length)) + 1);
  const rcptW = Math.min(
    40,
    Math.max(9, ...v.messages.flatMap((m) => m.recipients.map((r) => r.recipient.length))) + 1,
  );
  lines.push(`${pad('ID', 17)}${pad('AGE', 8)}${pad('FROM', fromW)}${pad('RECIPIENT', rcptW)}LEGS`);
  const counts = { pending: 0, deferred: 0, done: 0 };
  for (const m of v.messages) {
    counts[m.state]++;
    const age = formatAge(now.getTime() - Date.parse(m.receivedAt));
    m.recipients.forEach((r, i) => {
      const head =
        i === 0 ? `${pad(m.id, 17)}${pad(age, 8)}${pad(m.mailFrom || '<>', fromW)}` : ' '.repeat(25 + fromW);
      lines.push(`${head}${pad(r.recipient, rcptW)}${r.summary}`);
    });
  }
  const more = v.truncated ? `, ${v.total - v.messages.length} more not listed` : '';
  const skipped = v.skipped > 0 ? `, ${v.skipped} unreadable` : '';
  lines.push(
    `${v.total} message${v.total === 1 ? '' : 's'} (${counts.pending} pending, ${counts.deferred} deferred${more}${skipped})`,
  );
  return lines.join('\n') + '\n';
}

interface RerouteOne {
  id: string;
  changed: { recipient: string; role: string; from: string; to: string }[];
  unchanged: { recipient: string; role: string; reason: string }[];
}
interface RerouteAll {
  messages: number;
  rerouted: number;
  legs: number;
  unchanged: number;
}

export function renderReroute(body: unknown): string {
  if (typeof body === 'object' && body !== null && 'changed' in body) {
    const r = body as RerouteOne;
    const lines = [`${r.id}: ${r.changed.length} leg${r.changed.length === 1 ? '' : 's'} rerouted`];
    for (const c of r.changed) lines.push(`  ${c.recipient} ${c.role}: ${c.from} -> ${c.to}`);
    for (const u of r.unchanged) lines.push(`  ${u.recipient} ${u.role}: unchanged (${u.reason})`);
    return lines.join('\n') + '\n';
  }
  const a = body as RerouteAll;
  return `${a.rerouted} of ${a.messages} message${a.messages === 1 ? '' : 's'} rerouted (${a.legs} leg${a.legs === 1 ? '' : 's'} changed, ${a.unchanged} unchanged)\n`;
}

function legLine(l: LegView, now: Date): string {
  const parts = [`  ${l.role.padEnd(8)}${l.state.padEnd(11)}${l.server} (${l.address}) <${l.recipient}>`];
  if (l.unroutable) parts.push(`    HELD: ${l.unroutable}`);
  if (l.softBounced === true)
    parts.push(
      '    SOFT BOUNCE: the server refused it for good; softBounce keeps it queued (it bounces at the queue lifetime if still refused)',
    );
  const details: string[] = [`attempts ${l.attempts}`];
  if (l.nextAttemptAt) details.push(`next in ${formatAge(Date.parse(l.nextAttemptAt) - now.getTime())}`);
  if (l.lastReply) details.push(`last: ${l.lastReply}`);
  if (l.dsnId && l.dsnId !== 'none') details.push(`DSN ${l.dsnId}`);
  parts.push(`    ${details.join('; ')}`);
  return parts.join('\n');
}

export function renderMessage(m: MessageView, now: Date): string {
  const lines = [
    `id:       ${m.id}`,
    `received: ${m.receivedAt} (${formatAge(now.getTime() - Date.parse(m.receivedAt))} ago)`,
    `from:     ${m.mailFrom || '<>'}`,
    `size:     ${m.size} bytes`,
    `state:    ${m.state}`,
  ];
  if (m.origin)
    lines.push(`origin:   ${m.origin.queueId} on relay ${m.origin.relay} (handed over when it shut down)`);
  for (const r of m.recipients) {
    lines.push(`${r.recipient}: ${r.summary}`);
    for (const l of r.legs) lines.push(legLine(l, now));
  }
  return lines.join('\n') + '\n';
}

function parseAdmin(s: string): string | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s/]+)):(\d{1,5})$/.exec(s.trim());
  if (!m?.[3] || Number(m[3]) > 65535) return undefined;
  const host = m[1] !== undefined ? `[${m[1]}]` : (m[2] ?? '');
  return `http://${host}:${m[3]}`;
}

export async function run(argv: string[], io: QueueIo = defaultIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        admin: { type: 'string' },
        spool: { type: 'string' },
        'token-file': { type: 'string' },
        output: { type: 'string', short: 'o' },
        all: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    io.stderr(`mailroute queue: ${err instanceof Error ? err.message : String(err)}\n${QUEUE_USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    io.stdout(QUEUE_USAGE);
    return 0;
  }
  const [sub, id, ...extra] = positionals;
  const adminRaw = values.admin ?? io.env.MAILROUTE_ADMIN ?? '127.0.0.1:9091';
  const base = parseAdmin(adminRaw);
  if (!base) {
    io.stderr(`mailroute queue: --admin: expected HOST:PORT, got ${JSON.stringify(adminRaw)}\n`);
    return 2;
  }
  if (values.output !== undefined && values.output !== 'json') {
    io.stderr(`mailroute queue: -o: only "json" is supported, got ${JSON.stringify(values.output)}\n`);
    return 2;
  }
  const json = values.output === 'json';
  const all = values.all === true;
  const needsId = sub === 'show' || sub === 'delete' || (sub === 'reroute' && !all);
  if (sub === undefined || !['list', 'show', 'stats', 'flush', 'reroute', 'delete'].includes(sub)) {
    io.stderr(
      `mailroute queue: ${sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`}\n${QUEUE_USAGE}`,
    );
    return 2;
  }
  if (all && sub !== 'reroute') {
    io.stderr(`mailroute queue ${sub}: --all only goes with reroute\n`);
    return 2;
  }
  if (needsId && id === undefined) {
    io.stderr(`mailroute queue ${sub}: missing queue ID${sub === 'reroute' ? ' (or --all)' : ''}\n`);
    return 2;
  }
  if (extra.length > 0 || (!needsId && id !== undefined)) {
    io.stderr(`mailroute queue ${sub}: unexpected argument ${JSON.stringify(needsId ? extra[0] : id)}\n`);
    return 2;
  }

  // State changes need the relay's token (relay/admin/guard.ts); reads do not.
  let token: string | undefined;
  if (sub === 'flush' || sub === 'delete' || sub === 'reroute') {
    const file =
      values['token-file'] ??
      io.env.MAILROUTE_TOKEN_FILE ??
      adminTokenPath(values.spool ?? io.env.MAILROUTE_SPOOL ?? './spool');
    const t = await readAdminToken(file);
    if (!t.ok) {
      io.stderr(
        `mailroute queue ${sub}: cannot read the admin token (${t.error}); pass the relay's --spool DIR or --token-file FILE\n`,
      );
      return 1;
    }
    token = t.token;
  }

  const call = async (
    method: string,
    path: string,
  ): Promise<{ status: number; body: unknown } | undefined> => {
    try {
      const res = await io.fetch(`${base}${path}`, {
        method,
        ...(token !== undefined ? { headers: { authorization: `Bearer ${token}` } } : {}),
      });
      const text = await res.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        /* keep the text */
      }
      return { status: res.status, body };
    } catch (err) {
      const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : String(err);
      io.stderr(
        `mailroute queue: cannot reach the admin API at ${base} (${cause}); is the relay running with --admin ${adminRaw}?\n`,
      );
      return undefined;
    }
  };
  const fail = (r: { status: number; body: unknown }): number => {
    const msg =
      typeof r.body === 'object' && r.body !== null && 'error' in r.body
        ? String(r.body.error)
        : JSON.stringify(r.body);
    io.stderr(`mailroute queue ${sub}: ${msg} (HTTP ${r.status})\n`);
    return 1;
  };
  const now = io.now();

  switch (sub) {
    case 'list': {
      const r = await call('GET', '/queue');
      if (!r) return 1;
      if (r.status !== 200) return fail(r);
      io.stdout(json ? JSON.stringify(r.body, null, 2) + '\n' : renderList(r.body as QueueListView, now));
      return 0;
    }
    case 'show': {
      const r = await call('GET', `/queue/${encodeURIComponent(id!)}`);
      if (!r) return 1;
      if (r.status !== 200) return fail(r);
      io.stdout(json ? JSON.stringify(r.body, null, 2) + '\n' : renderMessage(r.body as MessageView, now));
      return 0;
    }
    case 'stats': {
      const r = await call('GET', '/queue/stats');
      if (!r) return 1;
      if (r.status !== 200) return fail(r);
      io.stdout(json ? JSON.stringify(r.body, null, 2) + '\n' : renderStats(r.body as StatsView));
      return 0;
    }
    case 'flush': {
      const r = await call('POST', '/queue/flush');
      if (!r) return 1;
      if (r.status !== 202) return fail(r);
      const n = (r.body as { messages?: number }).messages ?? 0;
      io.stdout(
        json ? JSON.stringify(r.body) + '\n' : `flush requested: ${n} message${n === 1 ? '' : 's'} queued\n`,
      );
      return 0;
    }
    case 'reroute': {
      const r = await call('POST', all ? '/queue/reroute' : `/queue/${encodeURIComponent(id!)}/reroute`);
      if (!r) return 1;
      if (r.status !== 200) return fail(r);
      io.stdout(json ? JSON.stringify(r.body, null, 2) + '\n' : renderReroute(r.body));
      return 0;
    }
    case 'delete': {
      const r = await call('DELETE', `/queue/${encodeURIComponent(id!)}`);
      if (!r) return 1;
      if (r.status !== 200) return fail(r);
      io.stdout(json ? JSON.stringify(r.body) + '\n' : `deleted ${id}\n`);
      return 0;
    }
    default:
      return 2;
  }
}
