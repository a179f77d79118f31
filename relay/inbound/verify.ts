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
//   no answer (connection, TLS, AUTH failure, busy, suspended, the probe's deadline) -> not cached per address; the
//            pool suspends the server instead (callout.ts), which bounds the cost of a failing server without
//            remembering a wrong answer; a warning says why, once per server per minute (noAnswerWarning).
// Concurrent lookups of one (server, address) share one callout; the key is the address lowercased and in NFC
// (cacheSpelling). A subaddress (alice+news@) is answered by its mailbox's entry when that says exists; with no entry
// for the mailbox, the mailbox is asked first, and the subaddress itself only when the mailbox does not exist: a sender
// that varies the extension (alice+1@, alice+2@, ...) makes one callout, not one per address. A subaddress's answer
// is never recorded for its mailbox (mary-jane@ is no evidence about mary@).
//
// Catch-all servers (catchAllDetection): a server that accepts any local part at RCPT answers every callout `exists`,
// so Split sends every recipient to it (mail for users who exist only on the secondary ends in its catch-all mailbox,
// or bounces later) and Dual scope Accounts copies every recipient. After a callout it answered `exists`, the verifier
// asks it, in the background, about an address that cannot exist at the same domain (catchAllProbeAddress), at most
// once per (server, domain) per min(cacheTTL, negativeTtlMs); accepted: a warning and
// mailroute_callout_catch_all{server,domain} 1; refused: 0. Routing does not change (the server does take the mail).
import { randomBytes } from 'node:crypto';
import type { Gauge } from 'prom-client';
import type { DomainRoute, MailboxFact, ServerRoute } from '../../routing/model.ts';
import type { RelayMetrics } from '../telemetry/metrics.ts';
import { cacheSpelling } from '../../routing/address.ts';
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
     * mailbox known to exist answers for each of its subaddresses without a callout, and one not known yet is asked
     * about first (askSubaddress). Undefined: `address` is no subaddress.
     */
    mailbox?: string,
  ): Promise<CalloutResult>;
}

/**
 * Maps the reply to RCPT TO (its code, and its first line from the code on) onto a fact. Pure.
 *
 * `absent` sends Split's mail to the secondary as its mailbox of record (or refuses it with 550 5.1.1 under
 * unknownRecipients: Reject) and is cached for 10 minutes, so only a refusal that says the mailbox is not there may
 * give it. A 550 is also what a server answers when it refuses the callout itself: postscreen's `550 5.7.1 Service
 * unavailable; client [IP] blocked using zen.spamhaus.org`, Microsoft 365's `550 5.7.606 Access denied, banned
 * sending IP`, Postfix refusing the null sender at RCPT (`550 5.7.1 <>: Sender address rejected`, smtpd_delay_reject),
 * Exim's `550 Authentication required`. Read as `absent`, each of them made every real mailbox of the primary
 * absent. So a 550/551/553 is `absent` only when it is about the address (refusesTheAddress); otherwise `unknown`
 * (Split: 451 4.4.3, and the sender retries).
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
  if (code === 550 || code === 551 || code === 553) return refusesTheAddress(text) ? 'absent' : 'unknown';
  return 'unknown';
}

/** The reply refuses for want of SMTPUTF8 (factOfReply): enhanced status X.6.Y, or SMTPUTF8 named. Pure. */
export function refusesForSmtpUtf8(text: string): boolean {
  return /^\d{3}[ -][245]\.6\.\d{1,3}(?![\d.])/.test(text) || /SMTPUTF8/i.test(text);
}

/**
 * The enhanced status code of a reply (RFC 3463): after the code (`550 5.1.1 ...`, `550-5.1.1 ...`), or qmail's
 * `(#5.1.1)` at the end of the text; undefined when there is none. Pure.
 */
export function enhancedStatusOf(text: string): { subject: number; detail: number } | undefined {
  const m =
    /^\d{3}[ -][245]\.(\d{1,3})\.(\d{1,3})(?![\d.])/.exec(text) ??
    /\(#[245]\.(\d{1,3})\.(\d{1,3})\)\s*$/.exec(text);
  return m ? { subject: Number(m[1]), detail: Number(m[2]) } : undefined;
}

/**
 * A 5xx refusal of RCPT (550/551/553) says that the address has no mailbox there, as opposed to refusing the callout
 * for a cause of its own (factOfReply). Pure.
 *
 * With an enhanced status (RFC 3463), its subject decides:
 *   X.1.x address status (5.1.1 bad mailbox, 5.1.0, 5.1.6 moved, 5.1.10 Exchange's RecipientNotFound) -> yes, except
 *         X.1.7 and X.1.8, which are about the sender (our `<>`);
 *   X.2.0 and X.2.1 (mailbox disabled, not accepting messages) -> yes: the server will not take mail for the address,
 *         now or at delivery; a mailbox disabled on the old provider is one whose user moved on (or left), and the
 *         secondary, which has the mailbox or refuses it as the primary would, loses nothing; read as unknown, every
 *         sender would retry for days before the same bounce;
 *   X.2.2 (mailbox full), X.2.3 (message too long), X.2.4 (mailing list) -> no: the mailbox is there;
 *   X.4.1 -> yes: Microsoft 365's unknown user is `550 5.4.1 Recipient address rejected: Access denied`
 *         (directory-based edge blocking); the rest of X.4 (routing, network) -> no;
 *   X.7 security or policy, X.5 protocol, X.3 mail system, X.6 content -> no: the callout was refused;
 *   X.0.0 (undefined) says nothing: read as a reply without one.
 * Without one, the text decides: one that names the sender or a policy cause (TLS, authentication, relaying, a block
 * list, "prohibited", "policy", "denied", "too many", the client host) is no refusal of the address, unless it also
 * names an unknown mailbox (Postfix's `User unknown in relay recipient table`); anything else is, as before (`550
 * Unrouteable address`, `550 No such user here`, a bare 550).
 */
function refusesTheAddress(text: string): boolean {
  const status = enhancedStatusOf(text);
  if (status !== undefined && !(status.subject === 0 && status.detail === 0))
    return statusRefusesTheAddress(status.subject, status.detail);
  // the address a server echoes (`<blockley@...>`) is no cause of its own
  const words = text.replace(/<[^>]*>/g, '');
  if (/\bsender\b/i.test(words)) return false;
  if (NAMES_UNKNOWN_MAILBOX.test(words)) return true;
  return !NAMES_POLICY_CAUSE.test(words);
}

/** refusesTheAddress for an enhanced status X.subject.detail. Pure. */
function statusRefusesTheAddress(subject: number, detail: number): boolean {
  switch (subject) {
    case 1:
      return detail !== 7 && detail !== 8;
    case 2:
      return detail === 0 || detail === 1;
    case 4:
      return detail === 1;
    default:
      return false;
  }
}

/** A reply without an enhanced status that says the mailbox is not there. */
const NAMES_UNKNOWN_MAILBOX =
  /user unknown|unknown (user|recipient|mailbox)|no such (user|mailbox|recipient|address)|(mailbox|user|recipient|address|account) (does not exist|doesn't exist|not found|unknown)|unrouteable|unroutable/i;

/** A reply without an enhanced status that names a cause other than the address (refusesTheAddress). */
const NAMES_POLICY_CAUSE =
  /tls|\bssl\b|\bauth|\brelay|block|blacklist|spam|\brbl\b|prohibit|policy|denied|too many|client host|reputation/i;

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
  /**
   * Told why an answer is `unknown` when the cause is SMTPUTF8 (the operator can act on it: the server's settings),
   * and why a server gave no answer (noAnswerWarning).
   */
  log?: CalloutLog;
  /**
   * Monotonic milliseconds, for the cache lifetimes, the callout durations and noAnswerWarning. Default
   * performance.now(): a step of the wall clock must not stretch a cached answer.
   */
  now?: () => number;
  /**
   * Ask a server, after a callout it answered `exists`, whether it accepts an address that cannot exist at the domain
   * (catchAllDetection). createCalloutVerifier turns it on; off by default here, where the pool is a test's.
   */
  detectCatchAll?: boolean;
  /** Catch-all answers remembered, per (server, domain); the least recently asked about is forgotten first. */
  maxCatchAllEntries?: number;
}

/** Where the verifier says why an answer is inconclusive (the relay's logger). */
interface CalloutLog {
  warn(obj: Record<string, unknown>, msg: string): void;
  /** What a catch-all probe found when it is no catch-all, or nothing (catchAllDetection). */
  debug?(obj: Record<string, unknown>, msg: string): void;
}

/** The server as the cache and the metrics name it: the same server asked about the same address is one entry. */
function serverId(s: ServerRoute): string {
  return `${s.host}:${s.port}:${s.mx ? 'mx' : 'host'}`;
}

/** An answer as a callout gave it, with whether the server answered at all (VerifierOptions: "no answer"). */
type Asked = CalloutResult & { answered: boolean };

export function createVerifier(opts: VerifierOptions): Verifier & { readonly size: number } {
  const now = opts.now ?? (() => performance.now());
  const maxEntries = opts.maxEntries ?? 100_000;
  const negativeTtlMs = opts.negativeTtlMs ?? 10 * 60_000;
  const unknownTtlMs = opts.unknownTtlMs ?? 30_000;
  const m = opts.metrics;
  const cache = new Map<string, { fact: MailboxFact; reply: string; until: number }>();
  const inflight = new Map<string, Promise<Asked>>();
  const warnNoAnswer = noAnswerWarning(opts.log, now);
  const catchAll =
    opts.detectCatchAll === true
      ? catchAllDetection({
          pool: opts.pool,
          negativeTtlMs,
          now,
          ...(opts.log ? { log: opts.log } : {}),
          ...(opts.maxCatchAllEntries !== undefined ? { maxEntries: opts.maxCatchAllEntries } : {}),
        })
      : undefined;
  if (catchAll !== undefined) m?.setCalloutCatchAllSource((gauge) => catchAll.fill(gauge));

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

  /** One callout about `address`, its metrics and logs, and its answer cached under `key` (and only there). */
  const ask = async (
    server: ServerRoute,
    address: string,
    key: string,
    cacheTtlMs: number,
    destinations: DomainRoute['destinations'],
  ): Promise<Asked> => {
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
    if (probe.kind === 'failed' || probe.kind === 'suspended') warnNoAnswer(server, probe.kind, probe.text);
    const ttl = cacheTtlFor(probe, fact, { cacheTtlMs, negativeTtlMs, unknownTtlMs });
    // Only the address asked about: a subaddress's answer is never its mailbox's. With recipientDelimiter "+-",
    // mary-jane@ may be a mailbox of its own while mary@ is none, and recording mary@ as existing from it overwrote
    // mary's `absent`: her next mail went to the primary, which refused it.
    if (ttl > 0) remember(key, { fact, reply, until: now() + ttl });
    // does the server say so of any recipient? (in the background: the answer goes back now)
    if (fact === 'exists') catchAll?.afterCallout(server, address, cacheTtlMs, destinations);
    return { fact, reply, cached: false, answered };
  };

  /** ask(), shared: concurrent lookups of one (server, address) make one callout. */
  const shared = (
    server: ServerRoute,
    address: string,
    key: string,
    cacheTtlMs: number,
    destinations: DomainRoute['destinations'],
  ): Promise<Asked> => {
    const running = inflight.get(key);
    if (running) return running;
    const p = ask(server, address, key, cacheTtlMs, destinations).finally(() => inflight.delete(key));
    inflight.set(key, p);
    return p;
  };

  /**
   * A subaddress whose mailbox has no answer yet: the mailbox is asked first, and when it exists, so does the
   * subaddress (and every other one: alice+1@, alice+2@, ... cost that one callout, which the unknown-recipient
   * limits would never bound, each being accepted). Otherwise the subaddress is asked itself: the server may have it
   * as a mailbox of its own (mary-jane@ with the delimiter "-"). When the mailbox got no answer at all (connection,
   * AUTH, deadline, suspended), neither would the subaddress now: that is the answer, and the client has waited once.
   */
  const askSubaddress = async (
    server: ServerRoute,
    address: string,
    key: string,
    mailbox: string,
    mailboxKey: string,
    cacheTtlMs: number,
    destinations: DomainRoute['destinations'],
  ): Promise<Asked> => {
    const viaMailbox = await shared(server, mailbox, mailboxKey, cacheTtlMs, destinations);
    if (viaMailbox.fact === 'exists' || !viaMailbox.answered) return viaMailbox;
    const own = cached(key); // asked by another session meanwhile
    if (own !== undefined) return { fact: own.fact, reply: own.reply, cached: true, answered: true };
    return shared(server, address, key, cacheTtlMs, destinations);
  };

  return {
    get size() {
      return cache.size;
    },
    async check(server, address, cacheTtlMs, destinations, mailbox) {
      const rules = destinations === undefined ? '' : `\u0000${JSON.stringify(destinations)}`;
      const keyOf = (a: string): string => `${serverId(server)}\u0000${cacheSpelling(a)}${rules}`;
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
      const asked =
        mailbox !== undefined && mailboxKey !== undefined && viaMailbox === undefined
          ? await askSubaddress(server, address, key, mailbox, mailboxKey, cacheTtlMs, destinations)
          : await shared(server, address, key, cacheTtlMs, destinations);
      return { fact: asked.fact, reply: asked.reply, cached: asked.cached };
    },
  };
}

/** The RFC 4648 base32 alphabet, in lower case. */
const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/**
 * An address at `domain` that cannot be a mailbox: `mailrouteprobe` and 16 base32 characters of 80 bits from the
 * system's cryptographic randomness, a new one at every call (catchAllDetection). Only letters and digits: a server
 * with subaddressing reads `mailroute-probe-x@` as the mailbox `mailroute@` with an extension (recipient_delimiter
 * "-", and likewise "_"), and that mailbox may exist; no delimiter is a letter or a digit. Pure but for `random`.
 */
export function catchAllProbeAddress(domain: string, random: (n: number) => Buffer = randomBytes): string {
  let local = '';
  let bits = 0;
  let value = 0;
  for (const byte of random(10)) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      local += BASE32[(value >>> bits) & 31];
    }
    value &= (1 << bits) - 1;
  }
  return `mailrouteprobe${local}@${domain}`;
}

/** What is known about one (server, domain) (catchAllDetection). */
interface CatchAllState {
  /** The server's name in its MailDomain, as the metrics name it. */
  server: string;
  domain: string;
  /** Monotonic ms before which the server is not asked again for the domain. */
  nextAt: number;
  /** A probe is under way. */
  asking: boolean;
  /** The last conclusive answer: true, it accepted the address that cannot exist; false, it refused it. */
  catchAll: boolean | undefined;
  /** The gauge shows it until then: the last `exists` from the server for the domain, plus the domain's cacheTTL. */
  showUntil: number;
}

/**
 * Catch-all detection. A server that accepts any local part at RCPT (and files the unknown ones into one mailbox, or
 * bounces them later) answers every callout `exists`: in Split every recipient goes to it, also the users who exist
 * only on the secondary (their mail is lost to them, and nothing said why); in Dual scope Accounts every recipient
 * gets a copy. Postfix's reject_unverified_recipient has the same blind spot; Exim's callout option `random` and the
 * commercial verifiers ask about an address that cannot exist, as this does.
 *
 * afterCallout(): after a callout the server answered `exists` (the one answer a catch-all makes wrong: an `absent` is
 * itself a refusal, and `unknown` routes nothing), the server is asked about catchAllProbeAddress() at the domain of
 * the address asked (the copy's domain for Dual scope Accounts), through the same pool (its bounds, deadline,
 * destination policy and credentials) as a background probe (callout.ts: it gives way to client callouts and its
 * failure suspends nothing). Nobody waits for it: the client's answer has gone back already. Its answer is neither
 * cached nor counted in mailroute_callouts_total, and no client's unknown-recipient limits see it. At most once per
 * (server, domain) per period, min(cacheTTL, negativeTtlMs) (default 10 min): the time an `absent` answer, which this
 * one usually is, is trusted; a server whose configuration changes is seen as soon as an absent answer would be; and
 * it costs the server one RCPT per domain per 10 min, what one random name of a harvest costs. A probe that was not
 * sent (busy, suspended) does not start the period.
 *
 * The answer: accepted (250/251) -> a warning (once per period, as the probe is) and the gauge 1; refused as no
 * mailbox (factOfReply `absent`) -> 0 and a debug line; anything else (4xx, a 5xx about something else, no answer)
 * -> unchanged, and a debug line. Routing does not change: the server does take the mail, and the relay cannot tell
 * where the mailbox is; the operator lists the mailboxes instead (spec.accounts) and takes the server out of
 * spec.recipientVerification (while it is the verification server, an address not listed is still asked about).
 *
 * fill(): the gauge, per (server name, domain), for each server that answered a callout `exists` for the domain within
 * that domain's cacheTTL (answers from it may still be in the cache): once the server is no longer asked (the fix
 * above), its series goes within cacheTTL. At most `maxEntries` (server, domain) are remembered; the least recently
 * asked about goes first (and is asked again at its next callout).
 */
function catchAllDetection(o: {
  pool: CalloutPool;
  negativeTtlMs: number;
  now: () => number;
  log?: CalloutLog;
  maxEntries?: number;
}): {
  afterCallout(
    server: ServerRoute,
    address: string,
    cacheTtlMs: number,
    destinations: DomainRoute['destinations'],
  ): void;
  fill(gauge: Gauge<'server' | 'domain'>): void;
} {
  const maxEntries = o.maxEntries ?? 10_000;
  const states = new Map<string, CatchAllState>();

  const ask = async (
    st: CatchAllState,
    server: ServerRoute,
    periodMs: number,
    destinations: DomainRoute['destinations'],
  ): Promise<void> => {
    const probe = catchAllProbeAddress(st.domain);
    const started = o.now();
    let result: CalloutProbe;
    try {
      result = await o.pool.probe(server, probe, destinations, { background: true });
    } catch (err) {
      result = { kind: 'failed', text: String(err) };
    } finally {
      st.asking = false;
    }
    // not sent: the next callout may try again
    if (result.kind !== 'busy' && result.kind !== 'suspended') st.nextAt = started + periodMs;
    const where = { server: server.name, host: server.host, port: server.port, domain: st.domain, probe };
    const fact = result.kind === 'reply' ? factOfReply(result.code, result.text) : 'unknown';
    const reply = result.kind === 'reply' ? result.text : `${result.kind}: ${result.text}`;
    if (fact === 'exists') {
      st.catchAll = true;
      o.log?.warn(
        { ...where, reply, periodSeconds: Math.round(periodMs / 1000) },
        `recipient verification: the server accepts any recipient (a catch-all): callouts cannot tell its mailboxes (it accepted an address that cannot exist). In Split every recipient goes to it, also those who exist only on the secondary (their mail ends in its catch-all, or bounces later); in Dual scope Accounts every recipient gets a copy. Routing is unchanged: list its mailboxes in the MailDomain's spec.accounts ({server: ${server.name}, addresses: [...]}) and take it out of spec.recipientVerification`,
      );
    } else {
      if (fact === 'absent') st.catchAll = false;
      o.log?.debug?.(
        { ...where, reply, catchAll: st.catchAll ?? null },
        fact === 'absent'
          ? 'recipient verification: the server refuses an address that cannot exist (no catch-all)'
          : 'recipient verification: no answer about an address that cannot exist (catch-all unknown)',
      );
    }
  };

  return {
    afterCallout(server, address, cacheTtlMs, destinations) {
      const domain = address.slice(address.lastIndexOf('@') + 1).toLowerCase();
      const key = `${serverId(server)}\u0000${domain}`;
      const t = o.now();
      const st: CatchAllState = states.get(key) ?? {
        server: server.name,
        domain,
        nextAt: 0,
        asking: false,
        catchAll: undefined,
        showUntil: 0,
      };
      // the most recently asked about moves to the end (the eviction order is insertion order)
      states.delete(key);
      states.set(key, st);
      if (states.size > maxEntries) {
        const oldest = states.keys().next();
        if (oldest.done !== true) states.delete(oldest.value);
      }
      st.server = server.name;
      st.showUntil = Math.max(st.showUntil, t + cacheTtlMs);
      if (st.asking || t < st.nextAt) return;
      st.asking = true;
      void ask(st, server, Math.min(cacheTtlMs, o.negativeTtlMs), destinations);
    },
    fill(gauge) {
      gauge.reset();
      const t = o.now();
      // one series per (name, domain): two servers of that name (a table changed) show the worse
      const shown = new Map<string, { server: string; domain: string; value: number }>();
      for (const st of states.values()) {
        if (st.catchAll === undefined || st.showUntil <= t) continue;
        const k = `${st.server}\u0000${st.domain}`;
        const value = st.catchAll ? 1 : 0;
        const seen = shown.get(k);
        if (seen === undefined || value > seen.value)
          shown.set(k, { server: st.server, domain: st.domain, value });
      }
      for (const s of shown.values()) gauge.set({ server: s.server, domain: s.domain }, s.value);
    },
  };
}

/**
 * The warning that a server gave no answer (`failed`: connection, TLS, AUTH, `MAIL FROM:<>` refused, the deadline;
 * `suspended` after such a failure): Split tempfails every recipient of the server with 451 4.4.3, and without it
 * no log line said why. At most one per server per minute (the rest are counted in the next one's `suppressed`): a
 * server that is down is asked for every RCPT. Remembers at most `maxServers` servers (the least recently warned
 * about is forgotten first). `now`: monotonic milliseconds (createVerifier passes its own).
 */
export function noAnswerWarning(
  log: CalloutLog | undefined,
  now: () => number,
  everyMs = 60_000,
  maxServers = 1_000,
): (server: ServerRoute, kind: 'failed' | 'suspended', text: string) => void {
  const last = new Map<string, { at: number; suppressed: number }>();
  return (server, kind, text) => {
    if (log === undefined) return;
    const id = `${server.name}\u0000${serverId(server)}`;
    const t = now();
    const seen = last.get(id);
    if (seen !== undefined && t - seen.at < everyMs) {
      seen.suppressed++;
      return;
    }
    last.delete(id);
    last.set(id, { at: t, suppressed: 0 });
    if (last.size > maxServers) {
      const oldest = last.keys().next();
      if (oldest.done !== true) last.delete(oldest.value);
    }
    log.warn(
      {
        server: server.name,
        host: server.host,
        port: server.port,
        result: kind,
        reply: text,
        suppressed: seen?.suppressed ?? 0,
      },
      'recipient verification got no answer from the server: its recipients are tempfailed (451 4.4.3) until it answers',
    );
  };
}

/** Settings of the callout pool and cache (the relay's --callout-* flags). */
export interface CalloutSettings {
  /** Our EHLO name. */
  heloName: string;
  /** Connection, greeting and per-command timeout. Default 10 s. A probe as a whole gets twice this (its deadline). */
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
  /** Why an answer is unknown (SMTPUTF8), or why there is none (VerifierOptions.log). */
  log?: CalloutLog;
  /** Monotonic milliseconds, for the cache and the pool's suspensions (VerifierOptions.now). */
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
    // a probe as a whole, its wait for a connection included: the client waits at RCPT meanwhile
    deadlineMs: 2 * t,
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
    detectCatchAll: true,
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
