// The relay's own SMTP client for the delivery path: one pool of connections (connection.ts) per destination target,
// behaving as the nodemailer SMTP pool it replaces (smtp-pool/index.js and pool-resource.js, with maxConnections,
// maxMessages Infinity and maxRequeues 1), without its per-message overhead.
//   - Up to maxConnections connections; sends wait in a FIFO; an idle connection is reused (the most recently used
//     first, so that surplus connections go idle and are closed), a new one opened while below the limit.
//   - Requeued once, on a fresh connection, after 200 ms: a send whose reused connection failed (closed, reset, timed
//     out, 421) before any byte of the message was written, and a send whose fresh connection the server closed
//     before its greeting. A message whose bytes were (partly) written is never sent again by the pool: the engine
//     decides.
//   - Opportunistic TLS whose STARTTLS handshake failed (connection.ts OpenResult tlsHandshake): the send goes at once
//     on a fresh connection without STARTTLS (and without AUTH), and the host gets plain text at once for an hour
//     (tls-fallback.ts; the memory is the factory's, so it outlives idle pools). Nothing of the message was written.
//   - After a transaction the server refused (MAIL, RCPT, DATA or the final reply, not 421) the connection is RSET and
//     reused; after any other failure it is closed.
//   - An idle connection the server closes, or that times out, is dropped; one idle for 4 minutes gets QUIT.
//   - close(): waiting sends are answered at once (network "Connection pool was closed"), idle connections get QUIT,
//     a transaction in flight finishes and its connection then gets QUIT (as nodemailer's pool.close()). Later sends
//     are answered "ECONNECTION: Connection pool was closed". No promise is left hanging.
// Envelope addresses are shaped as nodemailer's Mailer shapes them (envelope.ts); envelopes nodemailer would refuse
// (CR, LF or <> in an address, no recipient) are answered without connecting.
// A send may carry ESMTP parameters of its own (SmtpOutRequest: the drain's hand-off, relay/cluster/
// handoff-transport.ts): for MAIL FROM, and per recipient for the RCPT TO of each envelope address it became. They are
// checked before anything is queued (commands.ts esmtpParamsProblem); a bad one, or two recipients that became the
// same envelope address with different parameters, is answered locally (kind local, naming it) and nothing is sent.
// A send without them costs what it did before they existed (one check).
//
// Exports:
//   SmtpOutOptions, smtpOutTransportFactory(opts): (target) => SmtpOutTransport  - the delivery engine's default
//     (a TransportFactory).
//   SmtpOutRequest, SmtpOutTransport: a SendRequest with ESMTP parameters, and the transport that takes it.
//   envelopeAddresses(recipient): the envelope addresses a send makes of one recipient (usually one).
//   connectionSettings(target, hostname, timeouts): the settings of a target's connections (from smtpClientOptions).
import { isIP } from 'node:net';
import { DEFAULT_TIMEOUTS, smtpClientOptions, type SmtpTimeouts } from '../../../lib/smtp-client.ts';
import type { MessageBody } from '../../spool/types.ts';
import { EnvelopeShaper } from '../envelope.ts';
import type { AttemptReply } from '../outcome.ts';
import type { SendRequest, ServerTarget, ServerTransport } from '../transport.ts';
import { envelopeProblem, esmtpParamsProblem, MAIL_OWN_PARAMS } from './commands.ts';
import { SmtpConnection, type ConnectionSettings, type Envelope, type SendOutcome } from './connection.ts';
import { PLAIN_TEXT_MS, PlainTextHosts, plainTextSettings } from './tls-fallback.ts';
import {
  isTransient,
  smtpFailure,
  transactionReplies,
  type SmtpFailure,
  type TransactionResult,
} from './replies.ts';

/** An idle connection is closed (QUIT) after this long: nodemailer's pool idleTimeout, under RFC 5321's 5 minutes. */
const IDLE_MS = 4 * 60 * 1000;
/** A requeued send waits this long (nodemailer's pool: 50 ms, a 50 ms backoff, then its 100 ms processing delay). */
const REQUEUE_DELAY_MS = 200;

/** A send with ESMTP parameters of the caller's own, each one esmtp-param ("KEYWORD=value" or "KEYWORD"). */
export interface SmtpOutRequest extends SendRequest {
  /** Appended to MAIL FROM, after the client's own (SIZE and SMTPUTF8, which these may not repeat). */
  mailParams?: readonly string[];
  /**
   * recipient (as in `to`) -> appended to the RCPT TO of each envelope address it became; a recipient not in the map
   * gets none.
   */
  rcptParams?: ReadonlyMap<string, readonly string[]>;
}

export interface SmtpOutTransport extends ServerTransport {
  send(req: SmtpOutRequest): Promise<Map<string, AttemptReply>>;
}

export interface SmtpOutOptions {
  /** Our name in EHLO. */
  hostname: string;
  timeouts?: Partial<SmtpTimeouts>;
  /** How long a connection may stay idle before it is closed with QUIT; default 4 minutes. */
  idleMs?: number;
  /** How long a requeued send waits before it goes on a fresh connection; default 200 ms. */
  requeueDelayMs?: number;
  /**
   * How long a host whose STARTTLS handshake failed under opportunistic TLS gets plain text at once (tls-fallback.ts);
   * default an hour, 0: every connection tries STARTTLS again (and falls back again).
   */
  plainTextMs?: number;
}

/** The connection settings of a target: the TLS mode, certificate check and AUTH decided by smtpClientOptions. */
export function connectionSettings(
  target: ServerTarget,
  hostname: string,
  timeouts: SmtpTimeouts,
): ConnectionSettings {
  const o = smtpClientOptions(target, { hostname, timeouts });
  // requireTLS wins over ignoreTLS and opportunisticTLS (nodemailer: a contradiction never falls back to plain text)
  const requireTls = o.requireTLS === true;
  const tls = { ...o.tls };
  // SNI: the host name; an IP address is no SNI name (RFC 6066)
  const servername = tls.servername ?? o.servername ?? (isIP(target.host) === 0 ? target.host : undefined);
  if (servername !== undefined) tls.servername = servername;
  return {
    host: target.host,
    port: target.port,
    name: hostname.replace(/[\r\n]+/g, ''),
    timeouts,
    implicitTls: o.secure === true,
    requireTls,
    ignoreTls: !requireTls && o.ignoreTLS === true,
    opportunisticTls: !requireTls && o.opportunisticTLS === true,
    tls,
    ...(target.auth !== undefined ? { auth: target.auth } : {}),
  };
}

export function smtpOutTransportFactory(opts: SmtpOutOptions): (target: ServerTarget) => SmtpOutTransport {
  const timeouts: SmtpTimeouts = {
    connectionMs: opts.timeouts?.connectionMs ?? DEFAULT_TIMEOUTS.connectionMs,
    greetingMs: opts.timeouts?.greetingMs ?? DEFAULT_TIMEOUTS.greetingMs,
    socketMs: opts.timeouts?.socketMs ?? DEFAULT_TIMEOUTS.socketMs,
    finalReplyMs: opts.timeouts?.finalReplyMs ?? DEFAULT_TIMEOUTS.finalReplyMs,
  };
  const times = { idleMs: opts.idleMs ?? IDLE_MS, requeueDelayMs: opts.requeueDelayMs ?? REQUEUE_DELAY_MS };
  // one memory for every pool of the factory (the engine's): a pool closed when idle must not forget the host
  const plainHosts = new PlainTextHosts(opts.plainTextMs ?? PLAIN_TEXT_MS);
  return (target) =>
    new SmtpPool(
      connectionSettings(target, opts.hostname, timeouts),
      Math.max(1, target.maxConnections),
      times,
      plainHosts,
    );
}

const failed = (failure: SmtpFailure): TransactionResult => ({ ok: false, failure, rejected: [] });

/** Normalizes envelope addresses exactly as nodemailer's Mailer does, once per address (envelope.ts). */
const shaper = new EnvelopeShaper();

/** The envelope addresses SmtpPool#send makes of one recipient (two recipients may become the same one). */
export function envelopeAddresses(recipient: string): readonly string[] {
  return shaper.recipient(recipient).map((a) => a.trim());
}

const localReplies = (recipients: readonly string[], text: string): Map<string, AttemptReply> =>
  new Map(recipients.map((r) => [r, { kind: 'local', text }]));

interface Job {
  env: Envelope;
  body: MessageBody;
  /** The request's recipients, and the envelope addresses each became (addresses[i] for recipients[i]). */
  recipients: readonly string[];
  addresses: readonly (readonly string[])[];
  /** Failed once on a connection before any byte of it was written: goes only on a fresh connection now. */
  requeued: boolean;
  /** Its connection's STARTTLS handshake failed (opportunistic TLS): it goes in plain text now, once. */
  plainText: boolean;
  resolve: (replies: Map<string, AttemptReply>) => void;
}

/**
 * Puts a request's ESMTP parameters on its job's envelope, or says why they cannot go: a parameter that is not one
 * esmtp-param (or repeats a keyword, or one the client writes itself), or two recipients that became the same envelope
 * address (sent once) with different parameters.
 */
function addParams(job: Job, req: SmtpOutRequest): string | undefined {
  const { mailParams, rcptParams } = req;
  if (mailParams !== undefined) {
    const problem = esmtpParamsProblem(mailParams, MAIL_OWN_PARAMS);
    if (problem !== undefined) return `MAIL FROM: ${problem}`;
    job.env.mailParams = mailParams;
  }
  if (rcptParams === undefined) return undefined;
  /** envelope address -> the first recipient that became it, and that recipient's parameters */
  const first = new Map<string, { recipient: string; params: readonly string[] | undefined; text: string }>();
  for (let i = 0; i < req.to.length; i++) {
    const recipient = req.to[i];
    if (recipient === undefined) continue;
    const params = rcptParams.get(recipient);
    if (params !== undefined) {
      const problem = esmtpParamsProblem(params);
      if (problem !== undefined) return `RCPT TO ${JSON.stringify(recipient)}: ${problem}`;
    }
    const text = params?.join(' ') ?? '';
    for (const a of job.addresses[i] ?? []) {
      const earlier = first.get(a);
      if (earlier === undefined) first.set(a, { recipient, params, text });
      else if (earlier.text !== text) {
        return `recipients ${JSON.stringify(earlier.recipient)} and ${JSON.stringify(recipient)} are both the envelope address ${JSON.stringify(a)}, with different ESMTP parameters`;
      }
    }
  }
  job.env.rcptParams = job.env.to.map((a) => first.get(a)?.params);
  return undefined;
}

class SmtpPool implements SmtpOutTransport {
  private readonly settings: ConnectionSettings;
  private readonly max: number;
  private readonly times: { idleMs: number; requeueDelayMs: number };
  private readonly queue: Job[] = [];
  private readonly conns = new Set<SmtpConnection>();
  /** Idle connections, the most recently used last. */
  private readonly idle: SmtpConnection[] = [];
  /** Requeued sends waiting out requeueDelayMs. */
  private readonly delayed = new Set<{ job: Job; failure: SmtpFailure; timer: NodeJS.Timeout }>();
  private closed = false;
  /** The settings of a connection after a failed STARTTLS handshake (opportunistic TLS only). */
  private readonly plainSettings: ConnectionSettings;
  private readonly plainHosts: PlainTextHosts;
  /** What plainHosts knows this pool's host by. */
  private readonly hostKey: string;

  constructor(
    settings: ConnectionSettings,
    maxConnections: number,
    times: { idleMs: number; requeueDelayMs: number },
    plainHosts: PlainTextHosts,
  ) {
    this.settings = settings;
    this.max = maxConnections;
    this.times = times;
    this.plainSettings = plainTextSettings(settings);
    this.plainHosts = plainHosts;
    this.hostKey = `${settings.host}:${settings.port}`;
  }

  send(req: SmtpOutRequest): Promise<Map<string, AttemptReply>> {
    // duplicates dropped before trimming, as nodemailer's Mailer and then its client do
    const shaped = shaper.shapeEach(req.from, req.to);
    const to = shaped.to.map((a) => a.trim());
    const addresses = shaped.byRecipient.map((list) => list.map((a) => a.trim()));
    const job: Job = {
      env: {
        from: shaped.from === false ? '' : shaped.from.trim(),
        to,
        ...(req.size ? { size: req.size } : {}),
        ...(req.body8bit === true ? { body8bit: true } : {}),
      },
      body: req.raw,
      recipients: req.to,
      addresses,
      requeued: false,
      plainText: false,
      resolve: () => undefined,
    };
    if (this.closed) {
      return Promise.resolve(
        this.replies(job, failed(smtpFailure('ECONNECTION', 'Connection pool was closed'))),
      );
    }
    const problem = envelopeProblem(job.env.from, job.env.to);
    if (problem !== undefined) {
      return Promise.resolve(this.replies(job, failed(smtpFailure('EENVELOPE', problem))));
    }
    if (req.mailParams !== undefined || req.rcptParams !== undefined) {
      const refused = addParams(job, req);
      if (refused !== undefined)
        return Promise.resolve(localReplies(req.to, `ESMTP parameters refused, nothing sent: ${refused}`));
    }
    return new Promise((resolve) => {
      job.resolve = resolve;
      this.queue.push(job);
      this.pump();
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const job of this.queue.splice(0)) {
      job.resolve(this.replies(job, failed(smtpFailure(undefined, 'Connection pool was closed'))));
    }
    for (const { job, failure, timer } of this.delayed) {
      clearTimeout(timer);
      job.resolve(this.replies(job, failed(failure)));
    }
    this.delayed.clear();
    for (const conn of this.idle.splice(0)) {
      this.conns.delete(conn);
      conn.quit();
    }
    // connections setting up or in a transaction finish it, then release() says QUIT
  }

  /** Hands waiting sends to idle connections, or to new ones while below the limit. */
  private pump(): void {
    while (!this.closed) {
      const job = this.queue[0];
      if (job === undefined) return;
      const idle = job.requeued ? undefined : this.idle.pop();
      if (idle !== undefined) {
        this.queue.shift();
        this.run(idle, job);
      } else if (this.conns.size < this.max) {
        this.queue.shift();
        this.open(job);
      } else if (job.requeued && this.idle.length > 0) {
        // a requeued send needs a fresh connection: make room by retiring the least recently used idle one
        const old = this.idle.shift();
        if (old !== undefined) this.retire(old);
      } else {
        return;
      }
    }
  }

  /** The settings of a new connection: without STARTTLS when opportunistic TLS failed its handshake there lately. */
  private settingsFor(job: Job): ConnectionSettings {
    if (!this.settings.opportunisticTls) return this.settings;
    return job.plainText || this.plainHosts.has(this.hostKey) ? this.plainSettings : this.settings;
  }

  private open(job: Job): void {
    const conn = new SmtpConnection(this.settingsFor(job), {
      closed: (c) => this.drop(c),
      idleExpired: (c) => this.retire(c),
    });
    this.conns.add(conn);
    conn.open((r) => {
      if (r.ok) {
        this.run(conn, job);
        return;
      }
      this.conns.delete(conn);
      if (r.tlsHandshake && !job.plainText && !this.closed) {
        // Opportunistic TLS means plain text when the upgrade fails: at once, on a fresh connection (the server
        // answered, so nothing to wait for), and for this host's next connections too. Not a failure of the host: it
        // is neither reported nor suspended.
        this.plainHosts.remember(this.hostKey);
        job.plainText = true;
        this.queue.unshift(job);
      } else if (r.beforeGreeting && !job.requeued && !this.closed) {
        // the server closed before it said a word (a reused slot it had not freed yet, a restart): once more
        this.requeue(job, r.failure);
      } else {
        job.resolve(this.replies(job, failed(r.failure)));
      }
      this.pump();
    });
  }

  private run(conn: SmtpConnection, job: Job): void {
    const reused = conn.messages > 0;
    conn.send(job.env, job.body, (o: SendOutcome) => this.sent(conn, job, reused, o));
  }

  /** What a transaction's outcome means for its send and its connection (nodemailer's PoolResource.send). */
  private sent(conn: SmtpConnection, job: Job, reused: boolean, o: SendOutcome): void {
    const { result } = o;
    if (result.ok) {
      job.resolve(this.replies(job, result));
      this.release(conn);
      return;
    }
    const f = result.failure;
    if (reused && !o.bodyStarted && isTransient(f) && !job.requeued && !this.closed) {
      // The server dropped a connection it had kept open for us, before a byte of the message went out: the
      // message goes on a new connection.
      conn.close();
      this.conns.delete(conn);
      this.requeue(job, f);
      this.pump();
      return;
    }
    job.resolve(this.replies(job, result));
    if ((f.code === 'EENVELOPE' || f.code === 'EMESSAGE') && f.responseCode !== 421 && conn.alive) {
      // the server refused this message, the connection is fine: reset the session and keep it
      conn.reset((ok) => (ok ? this.release(conn) : this.drop(conn)));
      return;
    }
    conn.close();
    this.drop(conn);
  }

  /**
   * Puts the send back at the head of the queue after requeueDelayMs (as nodemailer's pool: a server that keeps
   * dropping connections is not called again at once). Closing the pool meanwhile answers it with its failure.
   */
  private requeue(job: Job, failure: SmtpFailure): void {
    job.requeued = true;
    const entry = {
      job,
      failure,
      timer: setTimeout(() => {
        this.delayed.delete(entry);
        this.queue.unshift(job);
        this.pump();
      }, this.times.requeueDelayMs),
    };
    this.delayed.add(entry);
  }

  /** A connection is free for the next send. */
  private release(conn: SmtpConnection): void {
    if (this.closed || !conn.alive) {
      conn.quit();
      this.drop(conn);
      return;
    }
    this.idle.push(conn);
    conn.idle(this.times.idleMs);
    this.pump();
  }

  /** Closes a connection with QUIT (idle too long, or its slot is needed). */
  private retire(conn: SmtpConnection): void {
    conn.quit();
    this.drop(conn);
  }

  /** Forgets a connection that is closed (or closing); a slot may be free for a waiting send. */
  private drop(conn: SmtpConnection): void {
    this.conns.delete(conn);
    const i = this.idle.indexOf(conn);
    if (i !== -1) this.idle.splice(i, 1);
    this.pump();
  }

  private replies(job: Job, result: TransactionResult): Map<string, AttemptReply> {
    return transactionReplies(job.recipients, job.addresses, result);
  }
}
