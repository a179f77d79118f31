// Recipient verification: a cache of callout answers per (server, address) in front of the callout pool
// (callout.ts), with the callout metrics.
//
// What is cached, and for how long (docs/relay.md "Recipient verification"):
//   exists  -> the MailDomain's cacheTTL;
//   absent  -> min(cacheTTL, negativeTtlMs) (default 10 min: a mailbox created during a migration is seen soon);
//   unknown from an SMTP reply (4xx, a code that says nothing, a refusal for want of SMTPUTF8), or because the address
//            is not ASCII and the server does not offer SMTPUTF8 (callout.ts probeMailFrom) -> min(cacheTTL,
//            unknownTtlMs) (default 30 s), so a server that tempfails one address is not asked again for every RCPT of
//            a burst, and a server that starts offering SMTPUTF8 is seen within 30 s;
//   no answer (connection, TLS, AUTH failure, busy, suspended) -> not cached per address; the pool suspends the server
//            instead (callout.ts), which bounds the cost of a failing server without remembering a wrong answer.
// Concurrent lookups of one (server, address) share one callout. A subaddress (alice+news@) is answered by its
// mailbox's entry when that says exists, and one found to exist records its mailbox: a sender that varies the
// extension (alice+1@, alice+2@, ...) makes one callout, not one per address.
import type { DomainRoute, MailboxFact, ServerRoute } from '../../routing/model.ts';
import type { RelayMetrics } from '../telemetry/metrics.ts';
import { createDnsResolver, type DnsResolver } from '../dns.ts';
import { createCalloutPool, type CalloutPool, type CalloutProbe } from './callout.ts';

/** A verification answer: the fact, and the reply it came from (or why there is none). */
interface CalloutResult {
  fact: MailboxFact;
  /** The server's RCPT reply ("550 5.1.1 no such user"), or what happened instead ("busy: ..."). */
  reply: string;
  /** Answered from the cache without a callout. */
  cached: boolean;
}

export interface Verifier {
  /** Is `address` (the address a leg to `server` would carry) a mailbox on `server`? */
  check(
    server: ServerRoute,
    address: string,
    cacheTtlMs: number,
    /** The domain's DomainClaim destinations (DomainRoute.destinations). */
    destinations?: DomainRoute['destinations'],
    /**
     * The mailbox `address` is a subaddress of (alice@ for alice+news@, as a leg to `server` would carry it): a
     * mailbox known to exist answers for each of its subaddresses without a callout, and a subaddress found to exist
     * records its mailbox as existing. Undefined: `address` is no subaddress.
     */
    mailbox?: string,
  ): Promise<CalloutResult>;
}

/**
 * Maps the reply to RCPT TO (its code, and its first line from the code on) onto a fact. Pure.
 *
 * A refusal for want of SMTPUTF8 is never `absent`: Postfix answers a non-ASCII address in a transaction without
 * SMTPUTF8 `553 5.6.7 Must declare SMTPUTF8 to send unicode address` (RFC 6531 §3.4), whatever its mailboxes are, and
 * `absent` would make Split send the mail to the secondary as its mailbox of record (cached for 10 minutes) and let
 * rejectUnknownRecipients refuse it. Every enhanced status of class X.6 (content or media: X.6.7 "non-ASCII addresses
 * not permitted", X.6.8 to X.6.10 about UTF-8) and any reply that names SMTPUTF8 (a server without enhanced codes)
 * is such a refusal: `unknown`.
 */
export function factOfReply(code: number, text = ''): MailboxFact {
  if (code === 250 || code === 251) return 'exists';
  if (refusesForSmtpUtf8(text)) return 'unknown';
  if (code === 550 || code === 551 || code === 553) return 'absent';
  return 'unknown';
}

/** The reply refuses for want of SMTPUTF8 (factOfReply): enhanced status X.6.Y, or SMTPUTF8 named. Pure. */
export function refusesForSmtpUtf8(text: string): boolean {
  return /^\d{3}[ -][245]\.6\.\d{1,3}(?![\d.])/.test(text) || /SMTPUTF8/i.test(text);
}

/** How long an answer is cached, in ms (0: not cached). Pure. */
export function cacheTtlFor(
  probe: CalloutProbe,
  fact: MailboxFact,
  ttl: { cacheTtlMs: number; negativeTtlMs: number; unknownTtlMs: number },
): number {
  // the server's own EHLO said it cannot take the address: kept as an unknown reply is
  if (probe.kind === 'unsupported') return Math.min(ttl.cacheTtlMs, ttl.unknownTtlMs);
  if (probe.kind !== 'reply') return 0;
  switch (fact) {
    case 'exists':
      return ttl.cacheTtlMs;
    case 'absent':
      return Math.min(ttl.cacheTtlMs, ttl.negativeTtlMs);
    case 'unknown':
      return Math.min(ttl.cacheTtlMs, ttl.unknownTtlMs);
  }
}

export interface VerifierOptions {
  pool: CalloutPool;
  /** Cache lifetime of an `absent` answer, capped by cacheTTL. Default 10 min. */
  negativeTtlMs?: number;
  /** Cache lifetime of an `unknown` reply (4xx), capped by cacheTTL. Default 30 s. */
  unknownTtlMs?: number;
  maxEntries?: number;
  metrics?: RelayMetrics;
  /** Told why an answer is `unknown` when the cause is SMTPUTF8 (the operator can act on it: the server's settings). */
  log?: CalloutLog;
  now?: () => number;
}

/** Where the verifier says why an answer is inconclusive (the relay's logger). */
interface CalloutLog {
  warn(obj: Record<string, unknown>, msg: string): void;
}

/** The server as the cache and the metrics name it: the same server asked about the same address is one entry. */
function serverId(s: ServerRoute): string {
  return `${s.host}:${s.port}:${s.mx ? 'mx' : 'host'}`;
}

export function createVerifier(opts: VerifierOptions): Verifier & { readonly size: number } {
  const now = opts.now ?? Date.now;
  const maxEntries = opts.maxEntries ?? 100_000;
  const negativeTtlMs = opts.negativeTtlMs ?? 10 * 60_000;
  const unknownTtlMs = opts.unknownTtlMs ?? 30_000;
  const m = opts.metrics;
  const cache = new Map<string, { fact: MailboxFact; reply: string; until: number }>();
  const inflight = new Map<string, Promise<CalloutResult>>();

  const remember = (key: string, entry: { fact: MailboxFact; reply: string; until: number }): void => {
    cache.delete(key); // a renewed entry moves to the end (the eviction order is insertion order)
    cache.set(key, entry);
    if (cache.size > maxEntries) {
      const oldest = cache.keys().next();
      if (oldest.done !== true) cache.delete(oldest.value);
    }
  };
  /** A live cache entry, or undefined (an expired one is dropped). */
  const cached = (key: string) => {
    const hit = cache.get(key);
    if (hit === undefined) return undefined;
    if (hit.until > now()) return hit;
    cache.delete(key);
    return undefined;
  };

  const ask = async (
    server: ServerRoute,
    address: string,
    key: string,
    cacheTtlMs: number,
    destinations: DomainRoute['destinations'],
    mailboxKey: string | undefined,
  ) => {
    const started = now();
    const probe = await opts.pool.probe(server, address, destinations);
    const fact = probe.kind === 'reply' ? factOfReply(probe.code, probe.text) : 'unknown';
    const reply = probe.kind === 'reply' ? probe.text : `${probe.kind}: ${probe.text}`;
    // `unsupported` is an answer from the server (its EHLO), counted as the fact it gives
    const answered = probe.kind === 'reply' || probe.kind === 'unsupported';
    m?.callouts.inc({ server: server.name, result: answered ? fact : probe.kind });
    if (answered || probe.kind === 'failed')
      m?.calloutDuration.observe({ server: server.name }, (now() - started) / 1000);
    if (probe.kind === 'unsupported' || (probe.kind === 'reply' && refusesForSmtpUtf8(probe.text)))
      opts.log?.warn(
        { server: server.name, host: server.host, port: server.port, reply },
        'recipient verification inconclusive for a non-ASCII address (SMTPUTF8): answered unknown, not absent',
      );
    const ttl = cacheTtlFor(probe, fact, { cacheTtlMs, negativeTtlMs, unknownTtlMs });
    if (ttl > 0) {
      remember(key, { fact, reply, until: now() + ttl });
      // the subaddress exists, so its mailbox does (an absent one says nothing about the mailbox)
      if (fact === 'exists' && mailboxKey !== undefined)
        remember(mailboxKey, { fact, reply, until: now() + ttl });
    }
    return { fact, reply, cached: false };
  };

  return {
    get size() {
      return cache.size;
    },
    async check(server, address, cacheTtlMs, destinations, mailbox) {
      const rules = destinations === undefined ? '' : `\u0000${JSON.stringify(destinations)}`;
      const keyOf = (a: string): string => `${serverId(server)}\u0000${a.toLowerCase()}${rules}`;
      const key = keyOf(address);
      const mailboxKey = mailbox === undefined ? undefined : keyOf(mailbox);
      // the address's own answer, else its mailbox's when that exists (alice+1, alice+2 ... cost one callout)
      const own = cached(key);
      const viaMailbox = own === undefined && mailboxKey !== undefined ? cached(mailboxKey) : undefined;
      const hit = own ?? (viaMailbox?.fact === 'exists' ? viaMailbox : undefined);
      if (hit !== undefined) {
        m?.calloutCacheHits.inc({ server: server.name, result: hit.fact });
        return { fact: hit.fact, reply: hit.reply, cached: true };
      }
      const running = inflight.get(key);
      if (running) return running;
      const p = ask(server, address, key, cacheTtlMs, destinations, mailboxKey);
      inflight.set(key, p);
      try {
        return await p;
      } finally {
        inflight.delete(key);
      }
    },
  };
}

/** Settings of the callout pool and cache (the relay's --callout-* flags). */
export interface CalloutSettings {
  /** Our EHLO name. */
  heloName: string;
  /** Connection, greeting and per-command timeout. Default 10 s. */
  timeoutMs?: number;
  credentials?: (ref: {
    namespace: string;
    name: string;
  }) => Promise<{ user: string; pass: string } | undefined>;
  /** The relay's DNS seam; default: the system's resolver. */
  resolver?: Pick<DnsResolver, 'resolveMx' | 'addresses'>;
  /** The resolver for a domain whose DomainClaim has destinations; default: `resolver`. */
  resolverFor?: (destinations: DomainRoute['destinations']) => Pick<DnsResolver, 'resolveMx' | 'addresses'>;
  /** Concurrent callout connections per server. Default 2. */
  maxConnections?: number;
  /** Callouts waiting for a connection per server; more get 451 4.4.3 at once. Default 100. */
  maxQueued?: number;
  /** Idle callout connections are closed after this long. Default 5 s. */
  idleMs?: number;
  negativeTtlMs?: number;
  unknownTtlMs?: number;
  maxEntries?: number;
  metrics?: RelayMetrics;
  /** Why an answer is unknown, when the cause is SMTPUTF8 (VerifierOptions.log). */
  log?: CalloutLog;
  now?: () => number;
}

const CALLOUT_DEFAULTS = {
  timeoutMs: 10_000,
  maxConnections: 2,
  maxQueued: 100,
  idleMs: 5_000,
  maxProbesPerConnection: 100,
  suspendMs: 10_000,
} as const;

/** The relay's verifier: cache (createVerifier) over a bounded, reusing callout pool (callout.ts). */
export function createCalloutVerifier(
  s: CalloutSettings,
): Verifier & { readonly size: number; readonly pool: CalloutPool; close(): void } {
  const t = s.timeoutMs ?? CALLOUT_DEFAULTS.timeoutMs;
  const m = s.metrics;
  const pool = createCalloutPool({
    hostname: s.heloName,
    timeouts: { connectionMs: t, greetingMs: t, socketMs: t },
    credentials: s.credentials ?? (() => Promise.resolve(undefined)),
    resolver: s.resolver ?? createDnsResolver(),
    ...(s.resolverFor ? { resolverFor: s.resolverFor } : {}),
    maxConnections: s.maxConnections ?? CALLOUT_DEFAULTS.maxConnections,
    maxQueued: s.maxQueued ?? CALLOUT_DEFAULTS.maxQueued,
    idleMs: s.idleMs ?? CALLOUT_DEFAULTS.idleMs,
    maxProbesPerConnection: CALLOUT_DEFAULTS.maxProbesPerConnection,
    suspendMs: CALLOUT_DEFAULTS.suspendMs,
    ...(m
      ? { onConnection: (server: ServerRoute) => m.calloutConnections.inc({ server: server.name }) }
      : {}),
    ...(s.now ? { now: s.now } : {}),
  });
  const v = createVerifier({
    pool,
    ...(s.negativeTtlMs !== undefined ? { negativeTtlMs: s.negativeTtlMs } : {}),
    ...(s.unknownTtlMs !== undefined ? { unknownTtlMs: s.unknownTtlMs } : {}),
    ...(s.maxEntries !== undefined ? { maxEntries: s.maxEntries } : {}),
    ...(m ? { metrics: m } : {}),
    ...(s.log ? { log: s.log } : {}),
    ...(s.now ? { now: s.now } : {}),
  });
  return {
    get size() {
      return v.size;
    },
    pool,
    check: (server, address, ttl, destinations, mailbox) =>
      v.check(server, address, ttl, destinations, mailbox),
    close: () => pool.close(),
  };
}
