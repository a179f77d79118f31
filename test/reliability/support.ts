// Shared helpers for the reliability suite. Relay processes are spawned with the relay suites' own helper
// (test/relay/relay-harness.ts spawnRelay); this file only adds what the reliability tests need on top:
// the full/reduced switch, the standard flag set, reading the admin port, RSS, metrics, and counting what the
// destination peers received by a unique Subject.
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import type { QueueListView } from '../../relay/admin/view.ts';
import { isOpenLeg } from '../../relay/spool/types.ts';
import type { SmtpPeer } from '../support/smtp-peer.ts';
import { RawSmtp, code } from '../relay/raw-client.ts';
import { waitFor } from '../support/wait.ts';
import { loopbackRelayArgs, type RelayChild } from '../relay/relay-harness.ts';

export {
  dualDestinations,
  submit,
  dualDomain,
  spawnRelay,
  tempDir,
  writeManifests,
  ROOT,
} from '../relay/relay-harness.ts';
export type { RelayChild } from '../relay/relay-harness.ts';

/** `npm run test:reliability` sets MAILROUTE_RELIABILITY_FULL=1: the long variants (20 crash rounds, 2,000 connections). */
export const FULL = process.env['MAILROUTE_RELIABILITY_FULL'] === '1';

/** Picks the full or the reduced (npm test) figure. */
export const scale = (full: number, reduced: number): number => (FULL ? full : reduced);

export const run = promisify(execFile);

/**
 * A load client's transport to the relay's SMTP port: one pooled connection, 5 s to connect and per socket read, so a
 * client whose relay (or worker) was killed gets an error soon instead of hanging.
 */
export function loadTransport(smtpPort: number) {
  return nodemailer.createTransport({
    host: '127.0.0.1',
    port: smtpPort,
    ignoreTLS: true,
    pool: true,
    maxConnections: 1,
    connectionTimeout: 5000,
    socketTimeout: 5000,
  });
}

/** The flags every reliability relay gets: loopback, port 0, fast retries, no held-back greeting (log level info:
 * spawnRelay reads the ports from the "relay started" info line). */
export function relayArgs(dir: string, extra: string[] = []): string[] {
  return loopbackRelayArgs(dir, ['--hostname', 'relay.test', '--retry-schedule', '1s', ...extra]);
}

/** The admin API port, from the child's "relay started" log line (spawnRelay only parses smtp and http). */
export function adminPort(child: RelayChild): number {
  for (const line of child.logs) {
    if (!line.includes('"relay started"')) continue;
    const admin = (JSON.parse(line) as { admin?: string }).admin ?? '';
    return Number(admin.slice(admin.lastIndexOf(':') + 1));
  }
  throw new Error('no "relay started" line in the relay log');
}

/** The pid and its descendants (the relay runs a primary and --workers processes), from /proc/PID/task/PID/children. */
export async function processTree(pid: number): Promise<number[]> {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    const p = out[i] as number;
    const kids = await readFile(`/proc/${p}/task/${p}/children`, 'utf8').catch(() => '');
    for (const k of kids.trim().split(/\s+/)) if (k !== '') out.push(Number(k));
  }
  return out;
}

/** VmRSS in KiB of a process and all its descendants (primary + workers); undefined once it is gone. */
export async function rssKb(pid: number): Promise<number | undefined> {
  let total: number | undefined;
  for (const p of await processTree(pid)) {
    try {
      const status = await readFile(`/proc/${p}/status`, 'utf8');
      const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
      if (m?.[1]) total = (total ?? 0) + Number(m[1]);
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

/** SIGKILL to every process of the tree (primary first, so it cannot restart a worker, then the workers, in the same
 * tick): a crash of the whole relay. The pids are read before; the kills are synchronous. Returns how many. */
export async function killTree(pid: number): Promise<number> {
  const pids = await processTree(pid);
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  return pids.length;
}

/** Samples the tree's RSS every intervalMs until stop(); reports the first sample (baseline) and the peak, in KiB. */
export function rssSampler(
  pid: number,
  intervalMs = 100,
): { stop(): Promise<{ baselineKb: number; peakKb: number }> } {
  let peak = 0;
  let baseline: number | undefined;
  let done = false;
  const loop = (async () => {
    while (!done) {
      const v = await rssKb(pid);
      if (v !== undefined) {
        baseline ??= v;
        if (v > peak) peak = v;
      }
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return {
    async stop() {
      done = true;
      await loop;
      const last = await rssKb(pid);
      return { baselineKb: baseline ?? 0, peakKb: Math.max(peak, last ?? 0) };
    },
  };
}

export async function metrics(httpPort: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
  return res.text();
}

/** mailroute_queue_messages summed over its states (0 when the queue is empty). */
export async function queuedMessages(httpPort: number): Promise<number> {
  const text = await metrics(httpPort);
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('mailroute_queue_messages')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Subject of a raw message (first Subject: header), or undefined. */
export function subjectOf(raw: Buffer): string | undefined {
  const head = raw.subarray(0, Math.max(0, raw.indexOf('\r\n\r\n')) || raw.length).toString('latin1');
  return /^Subject: ([^\r\n]*)/im.exec(head)?.[1];
}

/** How many times each tagged subject (e.g. "c-12") reached a peer. */
export function subjectCounts(peer: SmtpPeer, pattern: RegExp): Map<string, number> {
  const m = new Map<string, number>();
  for (const msg of peer.messages) {
    const s = subjectOf(msg.raw);
    if (s !== undefined && pattern.test(s)) m.set(s, (m.get(s) ?? 0) + 1);
  }
  return m;
}

/** Number of extra copies (sum over subjects of count - 1). */
export function duplicates(counts: Map<string, number>): number {
  let d = 0;
  for (const v of counts.values()) if (v > 1) d += v - 1;
  return d;
}

/**
 * A DSN: the null sender and a delivery-status report. The null sender alone no longer tells: a copy whose bounces
 * are suppressed goes out with MAIL FROM:<> too (relay/delivery/attempt.ts reversePath).
 */
export function isDsn(m: SmtpPeer['messages'][number]): boolean {
  return m.mailFrom === '' && /report-type=delivery-status/i.test(m.raw.toString('latin1'));
}

/** DSNs a peer received. */
export function bounces(peer: SmtpPeer): number {
  return peer.messages.filter(isDsn).length;
}

/** A figures line the docs quote: printed so `npm run test:reliability` shows it. */
export function report(name: string, figures: Record<string, unknown>): void {
  console.log(`[reliability] ${name}: ${JSON.stringify(figures)}`);
}

/** Sum of a metric's samples whose label set contains every given `key="value"` pair. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/**
 * Messages in the spool, from the admin API (GET /queue reads the spool itself). Use this to decide "drained":
 * the mailroute_queue_messages gauge is refreshed once a second, so it can read 0 just after a message was queued.
 */
export async function queueTotal(adminApiPort: number): Promise<number> {
  return (await getQueue(adminApiPort, 0)).total;
}

/** GET /queue?limit=N from the admin API. */
async function getQueue(adminApiPort: number, limit: number): Promise<QueueListView> {
  const res = await fetch(`http://127.0.0.1:${adminApiPort}/queue?limit=${limit}`);
  if (res.status !== 200) throw new Error(`GET /queue: ${res.status} ${await res.text()}`);
  return (await res.json()) as QueueListView;
}

/**
 * The open legs (`<queue id>/<recipient>/<role>`) that may have been in flight at a power cut and have not been tried
 * since the relay restarted: a leg of a message received before the restart, never tried since `restartedAt`, and
 * not held back until after `cutAt` by a retry time (a leg waiting for a retry due after the cut was not being tried
 * when the power went).
 */
export function legsNotRetried(view: QueueListView, restartedAt: number, cutAt: number): string[] {
  const out: string[] = [];
  for (const m of view.messages) {
    if (Date.parse(m.receivedAt) >= restartedAt) continue;
    for (const r of m.recipients) {
      for (const l of r.legs) {
        if (!isOpenLeg(l)) continue;
        if (l.lastAttemptAt !== undefined && Date.parse(l.lastAttemptAt) >= restartedAt) continue;
        if (l.nextAttemptAt !== undefined && Date.parse(l.nextAttemptAt) > cutAt) continue;
        out.push(`${m.id}/${r.recipient}/${l.role}`);
      }
    }
  }
  return out;
}

/** GET /queue with the largest page; throws when the queue does not fit in it. */
export async function queueView(adminApiPort: number): Promise<QueueListView> {
  const view = await getQueue(adminApiPort, 1000);
  if (view.truncated) throw new Error(`GET /queue: ${view.total} messages do not fit in one page`);
  return view;
}

/** Files in any quarantine/ folder under a spool (worker i keeps its spool in <spool>/w<i>). */
export async function quarantinedFiles(spoolDir: string): Promise<string[]> {
  const entries = await readdir(spoolDir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile() && join(e.parentPath, e.name).split(sep).includes('quarantine'))
    .map((e) => join(e.parentPath, e.name));
}

/**
 * Waits until every acknowledged id has reached every peer (`delivered` says which ids a peer holds), naming the
 * missing ones on timeout, then until the relay's queue (admin API) is empty.
 */
export async function allDeliveredAndDrained(
  acked: Iterable<string>,
  peers: Record<string, SmtpPeer>,
  delivered: (peer: SmtpPeer) => { has(id: string): boolean },
  adminApiPort: number,
  o: { deliveredMs: number; drainedMs: number },
): Promise<void> {
  const ids = [...acked];
  const list = Object.entries(peers);
  const missing = (peer: SmtpPeer): string[] => {
    const got = delivered(peer);
    return ids.filter((id) => !got.has(id));
  };
  await waitFor(() => list.every(([, p]) => missing(p).length === 0), {
    timeoutMs: o.deliveredMs,
    intervalMs: 100,
    what: 'every acknowledged message on every leg',
  }).catch((err: unknown) => {
    throw new Error(
      `${String(err)}; ${list.map(([n, p]) => `missing on ${n}: ${missing(p).join(',')}`).join('; ')}`,
    );
  });
  await waitFor(async () => (await queueTotal(adminApiPort)) === 0, {
    timeoutMs: o.drainedMs,
    what: 'the queue to drain',
  });
}

/**
 * One message over a fresh raw SMTP session: MAIL FROM sender@origin.test, RCPT TO `rcpt`, DATA with `body` (CRLF,
 * no line starting with a dot) and the terminator. Resolves with the reply to the end of DATA, or the first refusal.
 */
export async function sendRaw(port: number, rcpt: string, body: Buffer): Promise<string> {
  const c = await RawSmtp.connect(port);
  try {
    const replies = await c.begin('sender@origin.test', [rcpt]);
    const bad = replies.find((r) => code(r) >= 400 || r === '');
    if (bad !== undefined) return bad;
    const d = await c.cmd('DATA');
    if (code(d) !== 354) return d;
    c.write(Buffer.concat([body, Buffer.from('.\r\n')]));
    return await c.reply(20_000);
  } finally {
    c.close();
  }
}
