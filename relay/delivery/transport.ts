// Outbound SMTP: the seam between the delivery engine and its SMTP client (one pool per destination target,
// host:port:tls:auth), a nodemailer implementation of it, and MX resolution. The engine's default client is the
// relay's own (smtp-out/pool.ts), which behaves as the nodemailer pool here does with less CPU per message; the
// drain's hand-off (relay/cluster/handoff-transport.ts) uses it too. Nothing in relay/ sends a message through
// nodemailer any more but nodemailerTransportFactory (the recipient-verification callout, relay/inbound/callout.ts,
// uses nodemailer's SMTPConnection for commands without DATA).
//
// Exports:
//   ServerTarget, SendRequest, ServerTransport, TransportFactory: the seam the engine uses (injectable for tests).
//   nodemailerTransportFactory(opts): TransportFactory  - nodemailer's SMTP pool fed finished messages directly (no
//     Mailer layer, see poolMessage); refuses to start without the nodemailer patch. The benchmark's floor uses it.
//   readSource(body): a fresh stream of a spooled body (bytes in memory, or the first size bytes of its file), as
//     nodemailerTransportFactory hands it to nodemailer.
//   repliesFromNodemailer(recipients, err, info): Map<recipient, AttemptReply>  - pure mapping of nodemailer's result;
//     used by nodemailerTransportFactory only (smtp-out/replies.test.ts checks the own client's mapping against it).
//   resolveTargets(server, resolver): which hosts to connect to for a ServerRoute (MX lookup when mx: true); the engine
//     resolves each host's addresses through the same seam (relay/dns.ts).
//
// The client options of a destination (TLS modes, AUTH only over TLS) come from lib/smtp-client.ts.
// TCP_NODELAY: nodemailer (>= 10) calls socket.setNoDelay(true) on every socket it connects (smtp-connection
// _onConnect), so the final "." is not held back by Nagle (docs/design.md §7, the 40 ms stall Haraka has).
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type MailMessage from 'nodemailer/lib/mailer/mail-message';
import SMTPPool from 'nodemailer/lib/smtp-pool';
import type { ServerRoute } from '../../routing/model.ts';
import {
  DEFAULT_TIMEOUTS,
  smtpClientOptions,
  type SmtpClientTarget,
  type SmtpTimeouts,
} from '../../lib/smtp-client.ts';
import type { DnsResolver } from '../dns.ts';
import { EnvelopeShaper, type OutgoingEnvelope } from './envelope.ts';
import type { AttemptReply } from './outcome.ts';
import { assertNodemailerPatched } from './patched.ts';
import type { MessageBody } from '../spool/types.ts';

/** One destination of the delivery pool; host is an address resolved through relay/dns.ts (or a host name). */
export interface ServerTarget extends SmtpClientTarget {
  /** Identifies the credentials in the pool key without putting the password in it. */
  authKey?: string;
  maxConnections: number;
}

export interface SendRequest {
  /** '' for the null sender. */
  from: string;
  to: string[];
  /** The spooled message, sent byte for byte: its bytes, or its body file. */
  raw: MessageBody;
  /** Bytes in the body file: announced as MAIL FROM SIZE= when the server supports it (RFC 1870). */
  size?: number;
  /** Received with BODY=8BITMIME: announced again as MAIL FROM BODY=8BITMIME when the server offers 8BITMIME. */
  body8bit?: boolean;
}

export interface ServerTransport {
  /** One SMTP transaction; never rejects: every recipient of req.to gets a reply. */
  send(req: SendRequest): Promise<Map<string, AttemptReply>>;
  close(): void;
}

export type TransportFactory = (target: ServerTarget) => ServerTransport;

export function poolKey(
  t: Pick<ServerTarget, 'host' | 'servername' | 'port' | 'tls' | 'authKey' | 'allowPlaintextAuth'>,
): string {
  return `${t.host}:${t.port}:${t.tls}${t.allowPlaintextAuth === true ? '+plaintext-auth' : ''}:${t.authKey ?? ''}:${t.servername ?? ''}`;
}

interface NodemailerError {
  code?: string;
  message?: string;
  response?: string;
  responseCode?: number;
  recipient?: string;
  rejectedErrors?: NodemailerError[];
}

interface NodemailerInfo {
  accepted?: (string | { address: string })[];
  rejected?: (string | { address: string })[];
  rejectedErrors?: NodemailerError[];
  response?: string;
}

const addr = (a: string | { address: string }): string => (typeof a === 'string' ? a : a.address);

function errorReply(e: NodemailerError): AttemptReply {
  const text = e.response ?? e.message ?? 'unknown error';
  // Authentication and TLS problems are ours to fix (or the peer's to fix): retried, never bounced.
  if (e.code === 'EAUTH' || e.code === 'ETLS' || e.code === 'ENOAUTH') {
    return { kind: 'local', text: `${e.code}: ${e.message ?? text}` };
  }
  if (typeof e.responseCode === 'number' && e.responseCode > 0) {
    return { kind: 'smtp', code: e.responseCode, text };
  }
  return { kind: 'network', text: e.code ? `${e.code}: ${e.message ?? ''}`.trim() : text };
}

/** Maps a nodemailer sendMail outcome to one reply per recipient. Pure. */
export function repliesFromNodemailer(
  recipients: string[],
  err: NodemailerError | null,
  info: NodemailerInfo | undefined,
): Map<string, AttemptReply> {
  const out = new Map<string, AttemptReply>();
  const key = (r: string): string => r.toLowerCase();
  const byKey = new Map(recipients.map((r) => [key(r), r]));
  const set = (r: string, reply: AttemptReply): void => {
    const orig = byKey.get(key(r));
    if (orig !== undefined) out.set(orig, reply);
  };
  if (err) {
    const fallback = errorReply(err);
    // Per-recipient refusals at RCPT TO when every recipient was refused.
    for (const re of err.rejectedErrors ?? []) if (re.recipient) set(re.recipient, errorReply(re));
    for (const r of recipients) if (!out.has(r)) out.set(r, fallback);
    return out;
  }
  const response = info?.response ?? '250 OK';
  const code = Number(/^(\d{3})/.exec(response)?.[1] ?? 250);
  for (const re of info?.rejectedErrors ?? []) if (re.recipient) set(re.recipient, errorReply(re));
  for (const a of info?.rejected ?? []) {
    if (!out.has(byKey.get(key(addr(a))) ?? ''))
      set(addr(a), { kind: 'smtp', code: 550, text: 'recipient rejected' });
  }
  for (const a of info?.accepted ?? []) set(addr(a), { kind: 'smtp', code, text: response });
  for (const r of recipients) {
    if (!out.has(r))
      out.set(r, { kind: 'local', text: 'no reply for this recipient in the SMTP transaction' });
  }
  return out;
}

export interface NodemailerFactoryOptions {
  /** Our name in EHLO. */
  hostname: string;
  timeouts?: Partial<SmtpTimeouts>;
}

export function nodemailerTransportFactory(opts: NodemailerFactoryOptions): TransportFactory {
  assertNodemailerPatched();
  const t = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
  return (target: ServerTarget): ServerTransport => {
    const pool = new SMTPPool({
      ...smtpClientOptions(target, { hostname: opts.hostname, timeouts: t }),
      maxConnections: Math.max(1, target.maxConnections),
      maxMessages: Infinity,
      // A connection dropped while sending is retried once by the pool (a reused connection the server closed);
      // beyond that the engine's retry schedule decides (nodemailer's default is 5 requeues with backoff).
      maxRequeues: 1,
    });
    // A pool emits 'error' for connection problems it also reports to the send callback.
    pool.on('error', () => undefined);
    return {
      send(req: SendRequest): Promise<Map<string, AttemptReply>> {
        return new Promise((resolve) => {
          pool.send(poolMessage(req), (err: Error | null, info: unknown) => {
            resolve(repliesFromNodemailer(req.to, err, info as NodemailerInfo));
          });
        });
      },
      close(): void {
        pool.close();
      },
    };
  };
}

/**
 * The message as nodemailer's SMTP pool reads it (pool-resource.js: getEnvelope, messageId, getHeader,
 * createReadStream, data). The relay sends finished messages byte for byte, so it hands the pool this instead of a
 * Mailer message: no MIME tree is composed, no Message-ID or boundary generated (two random-byte system calls), no
 * stream pipeline set up per message (measured: about 6 % of the relay's CPU under load, docs/perf.md).
 * createReadStream() is called for each attempt, so a message the pool requeues on a fresh connection is read again
 * from the start.
 */
interface PoolMessage {
  data: Record<string, never>;
  message: {
    getEnvelope(): OutgoingEnvelope;
    messageId(): string;
    getHeader(key: string): string;
    createReadStream(): Readable;
  };
}

/** Normalizes envelope addresses exactly as nodemailer's Mailer does (MimeNode.setEnvelope), once per address. */
const envelopeShaper = new EnvelopeShaper();

function poolMessage(req: SendRequest): MailMessage<SMTPPool.SentMessageInfo> {
  const envelope = envelopeShaper.shape(req.from, req.to, req.size);
  const msg: PoolMessage = {
    data: {},
    message: {
      getEnvelope: () => envelope,
      messageId: () => '',
      getHeader: () => '',
      createReadStream: () => readSource(req.raw),
    },
  };
  // The pool's declared parameter is a whole Mailer message; it reads only what PoolMessage has.
  return msg as unknown as MailMessage<SMTPPool.SentMessageInfo>;
}

/**
 * A fresh stream of a body: the bytes in memory, or bytes [start, size) of its file. A stream of bytes in memory also
 * carries them as `mailrouteBody`: the patched nodemailer then encodes them at once and writes them in one call instead
 * of piping the stream through its encoder (relay/delivery/patched.ts); it reads the stream once to mark it sent.
 */
export function readSource(body: MessageBody): Readable {
  if (Buffer.isBuffer(body)) {
    const r = new Readable({
      read() {
        this.push(body);
        this.push(null);
      },
    });
    return Object.assign(r, { mailrouteBody: body });
  }
  const start = body.start ?? 0;
  if (body.size <= start) return Readable.from([]);
  return createReadStream(body.path, { start, end: body.size - 1 });
}

/** The body without its first `skip` bytes. */
export function skipBytes(body: MessageBody, skip: number): MessageBody {
  if (skip <= 0) return body;
  if (Buffer.isBuffer(body)) return body.subarray(skip);
  return { ...body, start: (body.start ?? 0) + skip };
}

/** The part of the DNS seam (relay/dns.ts) resolveTargets needs. */
export type MxResolver = Pick<DnsResolver, 'resolveMx'>;

export type TargetsResult = { ok: true; hosts: string[] } | { ok: false; reply: AttemptReply };

/**
 * Where to connect for a server: its host, or with mx: true its MX hosts by preference (RFC 5321 §5.1: no MX record
 * means the host itself; a null MX "." means the domain takes no mail).
 */
export async function resolveTargets(server: ServerRoute, resolver: MxResolver): Promise<TargetsResult> {
  if (!server.mx) return { ok: true, hosts: [server.host] };
  let records: { exchange: string; priority: number }[];
  try {
    records = await resolver.resolveMx(server.host);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENODATA' || code === 'ENOTFOUND') return { ok: true, hosts: [server.host] };
    return {
      ok: false,
      reply: { kind: 'network', text: `MX lookup for ${server.host} failed: ${code ?? String(err)}` },
    };
  }
  if (records.length === 0) return { ok: true, hosts: [server.host] };
  if (records.length === 1 && (records[0]?.exchange === '' || records[0]?.exchange === '.')) {
    return {
      ok: false,
      reply: { kind: 'smtp', code: 556, text: `556 5.1.10 ${server.host} does not accept mail (null MX)` },
    };
  }
  const hosts = [...records]
    .sort((a, b) => a.priority - b.priority)
    .map((r) => r.exchange.replace(/\.$/, ''))
    .filter((h) => h !== '');
  return { ok: true, hosts: [...new Set(hosts)] };
}
