// Recipient-verification callouts over reused SMTP connections, bounded per server (issue: callout amplification).
//
//   createCalloutPool(opts).probe(server, address) -> CalloutProbe
//
// A probe is `MAIL FROM:<>` (with SMTPUTF8 for a non-ASCII address), `RCPT TO:<address>`, `RSET` on a connection
// that speaks the server's language: the client options come from smtpClientOptions() (lib/smtp-client.ts), the same
// function the delivery pools use, so the callout has the server's port, TLS mode (STARTTLS, RequiredVerify's
// certificate check, Implicit TLS) and credentials (AUTH with the authSecretRef the delivery path resolves). mx: true
// asks the most preferred MX host that answers, as delivery would; every host name is resolved through the relay's
// DNS seam (relay/dns.ts) and an address is connected to, with the name kept for TLS.
//
// Bounds, per server (its host, port, TLS mode and credentials):
//   - at most maxConnections callout connections at once, each reused for up to maxProbesPerConnection probes
//     (RSET between), closed after idleMs without work (Postfix verify(8) with its connection cache);
//   - at most maxQueued probes waiting for a connection; one more gets `busy` at once (the RCPT phase answers
//     451 4.4.3 without touching the server);
//   - after a connection could not be set up (refused, TLS or AUTH failure), probes get `suspended` for suspendMs
//     instead of each trying again;
//   - each probe has one deadline (deadlineMs, the relay's 2 x --callout-timeout) over all of it: the wait for a
//     connection, its setup, MAIL and RCPT. The per-socket timeouts alone do not bound it: a tarpit that sends one
//     byte every 400 ms restarts nodemailer's socket timeout forever, and a probe queued behind it waited for it. On
//     expiry the probe is `failed` (the client gets 451 4.4.3), it leaves the wait queue, and a connection it was
//     using or opening is closed, never reused. The answer goes back as soon as the RCPT reply is in; RSET follows
//     without a client waiting for it, and the connection is reused only once RSET is through (within the
//     per-command timeout, else it is closed).
//
// A background probe (ProbeOptions.background: the verifier's catch-all probe, verify.ts) is asked on the same terms
// (the cap, the deadline, the destination policy, a suspension in force) but gives way to the client callouts: it
// never waits behind one (`busy` when any is waiting), a connection freed goes to a client callout first, and its own
// failure to set up a connection does not suspend the server (no client's answer depends on it).
//
// The SMTP client is nodemailer's SMTPConnection: connect() does the greeting, EHLO, STARTTLS per the options,
// login() does AUTH. It has no public call for an envelope without DATA, so MAIL/RCPT/RSET go through
// queueSmtpCommand (relay/delivery/smtp-command.ts), which uses the same internals its own reset() uses.
//
// A non-ASCII address (an SMTPUTF8 recipient, RFC 6531) is asked about with `MAIL FROM:<> SMTPUTF8` when the server
// offered SMTPUTF8 in its EHLO reply, and not at all when it did not (probeMailFrom, below).
import { createHash } from 'node:crypto';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { isNonAscii } from '../../routing/address.ts';
import type { DomainRoute, ServerRoute } from '../../routing/model.ts';
import { resolveTargets } from '../delivery/transport.ts';
import {
  plaintextAuthRefusal,
  queueSmtpCommand,
  smtpClientOptions,
  type SmtpTimeouts,
} from '../../lib/smtp-client.ts';
import type { DnsResolver } from '../dns.ts';
import { isDestinationDenied } from '../destinations.ts';

/** What one probe learned. `reply`: the server answered RCPT TO (code and the whole reply line). */
export type CalloutProbe =
  | { kind: 'reply'; code: number; text: string }
  /** The exchange did not get to a RCPT reply: connection, TLS, AUTH, MAIL FROM refused, timeout. */
  | { kind: 'failed'; text: string }
  /** Refused locally without asking: too many probes waiting for this server. */
  | { kind: 'busy'; text: string }
  /** Refused locally without asking: the server failed moments ago (suspendMs). */
  | { kind: 'suspended'; text: string }
  /**
   * Not asked: the address is not ASCII and the server did not offer SMTPUTF8 in its EHLO reply, so it cannot take
   * mail for the address over SMTP at all (probeMailFrom). An answer about the server, not about the mailbox.
   */
  | { kind: 'unsupported'; text: string };

/**
 * The MAIL FROM of a probe about `address` on a connection to a server that did (offersSmtpUtf8) or did not offer
 * SMTPUTF8 in its EHLO reply; or, as `unsupported`, why the server is not asked at all. Pure.
 *
 * RFC 6531 §3.4: a non-ASCII address may be sent only in a transaction whose MAIL FROM carries SMTPUTF8. Without it
 * Postfix answers `553 5.6.7 Must declare SMTPUTF8 to send unicode address`, a refusal of the command that says
 * nothing about the mailbox (and that the reply's old reading took for `absent`: Split then made the secondary the
 * mailbox of record). The probe's sender is always `<>`, so the recipient alone decides. An ASCII address is asked
 * without SMTPUTF8, as before: its answer does not depend on it, which is also why the answer cache is still keyed by
 * (server, address) and not by whether the client's transaction was SMTPUTF8 (the RCPT phase refuses a non-ASCII
 * recipient without SMTPUTF8 before any callout, relay/inbound/rcpt.ts).
 *
 * RFC 6531 §3.2: a non-ASCII address must not be sent to a server that does not offer SMTPUTF8. Such a server cannot
 * take mail for the address over SMTP at all (Postfix's own client bounces that mail: "SMTPUTF8 is required, but was
 * not offered by host"), so it is not asked: its answer would be a syntax refusal, or a lookup of bytes it does not
 * read as UTF-8, neither of them about the mailbox. The verifier reads `unsupported` as `unknown`, never `absent`:
 * what a server cannot parse is no evidence that the mailbox lives elsewhere, and `absent` would make Split send the
 * mail to the secondary as its mailbox of record. `unknown` defers it (Split: 451 4.4.3) until the server offers
 * SMTPUTF8 — what Postfix's reject_unverified_recipient does by default with a probe that failed that way (450).
 */
export function probeMailFrom(
  address: string,
  offersSmtpUtf8: boolean,
): { line: string } | { unsupported: string } {
  if (!isNonAscii(address)) return { line: 'MAIL FROM:<>' };
  if (offersSmtpUtf8) return { line: 'MAIL FROM:<> SMTPUTF8' };
  return {
    unsupported:
      'the server does not offer SMTPUTF8, so it cannot take mail for a non-ASCII address (RFC 6531): not asked',
  };
}

export interface CalloutPoolOptions {
  /** Our EHLO name. */
  hostname: string;
  /** Client timeouts (callouts run while a client waits at RCPT: keep them short). */
  timeouts: SmtpTimeouts;
  /** Resolves a server's authSecretRef, as for delivery; undefined: not available. */
  credentials: (ref: {
    namespace: string;
    name: string;
  }) => Promise<{ user: string; pass: string } | undefined>;
  /** The relay's DNS seam (relay/dns.ts): MX records and the addresses of each host, as for delivery. */
  resolver: Pick<DnsResolver, 'resolveMx' | 'addresses'>;
  /** The resolver for a domain whose DomainClaim has destinations (as for delivery); default: `resolver`. */
  resolverFor?: (destinations: DomainRoute['destinations']) => Pick<DnsResolver, 'resolveMx' | 'addresses'>;
  /** Concurrent callout connections per server (further capped by the server's maxConnections). */
  maxConnections: number;
  /** Probes that may wait for a connection per server; more get `busy`. */
  maxQueued: number;
  /** An unused connection is closed (QUIT) after this long. */
  idleMs: number;
  /** Probes per connection before it is replaced. */
  maxProbesPerConnection: number;
  /** After a connection could not be set up, probes to the server are refused for this long. 0: never. */
  suspendMs: number;
  /**
   * The whole of one probe, the wait for a connection included; then it is `failed`. Default: twice the longest of
   * `timeouts` (the relay passes 2 x --callout-timeout).
   */
  deadlineMs?: number;
  /** Told when a connection is opened (metrics). */
  onConnection?: (server: ServerRoute) => void;
  /** Monotonic milliseconds, for the lane suspensions (a step of the wall clock must not stretch them). */
  now?: () => number;
}

class CalloutError extends Error {}

/** One callout connection: SMTPConnection after connect (+ login), probing one address at a time. */
class Session {
  probes = 0;
  dead = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private pending: ((err: Error) => void) | undefined;

  private readonly conn: SMTPConnection;
  /** The server offered SMTPUTF8 in its EHLO reply (the one after STARTTLS, when there was one). */
  private readonly smtputf8: boolean;

  /** How long RSET may take before the connection is closed instead of reused (the per-command timeout). */
  private readonly resetMs: number;
  /** The credentials it logged in with (authDigest): after a rotation it is not reused. */
  readonly authDigest: string;

  constructor(conn: SMTPConnection, resetMs: number, authDigest: string) {
    this.conn = conn;
    this.resetMs = resetMs;
    this.authDigest = authDigest;
    this.smtputf8 = offersSmtpUtf8(conn);
    const fail = (err: Error): void => {
      this.dead = true;
      const p = this.pending;
      this.pending = undefined;
      p?.(err);
    };
    conn.on('error', (err: Error) => fail(err));
    conn.on('end', () => fail(new CalloutError('connection closed by the server')));
  }

  /** One command and its reply (the whole reply, code first). */
  command(line: string): Promise<string> {
    if (this.dead) return Promise.reject(new CalloutError('connection closed'));
    return new Promise((resolve, reject) => {
      this.pending = reject;
      queueSmtpCommand(this.conn, line, (reply: string) => {
        this.pending = undefined;
        resolve(reply);
      });
    });
  }

  /**
   * MAIL FROM and RCPT TO; the answer, and `reset`, which settles once the connection may be used again (RSET is
   * through) or has been closed. `deadline` closes the connection: the command waiting for its reply fails at once.
   */
  async probe(
    address: string,
    deadline: AbortSignal,
  ): Promise<{ result: CalloutProbe; reset: Promise<void> }> {
    const from = probeMailFrom(address, this.smtputf8);
    // nothing is sent: the connection stays as it was, for the next probe
    if ('unsupported' in from)
      return { result: { kind: 'unsupported', text: from.unsupported }, reset: Promise.resolve() };
    const expire = (): void => this.destroy('the callout deadline passed');
    deadline.addEventListener('abort', expire, { once: true });
    try {
      this.probes++;
      const mail = await this.command(from.line);
      if (!mail.startsWith('2')) {
        // not about the address; the connection may be fine, but start the next probe clean
        this.close();
        return {
          result: { kind: 'failed', text: `${from.line}: ${firstLine(mail)}` },
          reset: Promise.resolve(),
        };
      }
      const rcpt = await this.command(`RCPT TO:<${address}>`);
      return {
        result: { kind: 'reply', code: Number(rcpt.slice(0, 3)) || 0, text: firstLine(rcpt) },
        reset: this.reset(),
      };
    } finally {
      deadline.removeEventListener('abort', expire);
    }
  }

  /** RSET, for the next probe; a connection that refuses it, or does not answer within resetMs, is closed. */
  private async reset(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve('late'), this.resetMs);
    });
    const rset = await Promise.race([this.command('RSET').catch(() => ''), late]);
    clearTimeout(timer);
    if (rset === 'late') this.destroy('RSET not answered');
    else if (!rset.startsWith('2')) this.close();
  }

  idle(ms: number, onIdle: () => void): void {
    this.idleTimer = setTimeout(onIdle, ms);
    this.idleTimer.unref();
  }

  busy(): void {
    clearTimeout(this.idleTimer);
  }

  /** Closes the connection at once, without QUIT (a server that does not answer); a command waiting fails. */
  destroy(why: string): void {
    clearTimeout(this.idleTimer);
    this.dead = true;
    const p = this.pending;
    this.pending = undefined;
    this.conn.close();
    p?.(new CalloutError(why));
  }

  /** QUIT and close (nodemailer closes when the server answers QUIT, or on its socket timeout). */
  close(): void {
    clearTimeout(this.idleTimer);
    if (this.dead) return;
    this.dead = true;
    try {
      this.conn.quit();
    } catch {
      this.conn.close();
    }
    // do not wait for the QUIT reply longer than a moment
    setTimeout(() => this.conn.close(), 1000).unref();
  }
}

function firstLine(reply: string): string {
  return reply.split(/\r?\n/)[0]?.trim() ?? '';
}

/**
 * Whether the server offered SMTPUTF8 on this connection, as nodemailer read its last EHLO reply (its internal
 * `_supportedExtensions`, which its own send() consults for SMTPUTF8; like queueSmtpCommand, an internal: a nodemailer
 * upgrade that changes it makes every server look as if it did not offer SMTPUTF8, which defers non-ASCII recipients
 * instead of misrouting them, and fails test/relay/callout.test.ts).
 */
function offersSmtpUtf8(conn: SMTPConnection): boolean {
  const ext = (conn as unknown as { _supportedExtensions?: unknown })._supportedExtensions;
  return Array.isArray(ext) && ext.includes('SMTPUTF8');
}

/** A server as the pool keys it: where and how to connect, and with which credentials (never the password). */
function laneKey(server: ServerRoute, destinations: DomainRoute['destinations']): string {
  const auth = server.authSecretRef ? `${server.authSecretRef.namespace}/${server.authSecretRef.name}` : '';
  const rules = destinations === undefined ? '' : JSON.stringify(destinations);
  return `${server.host}|${server.port}|${server.mx}|${server.tls}|${auth}|${server.allowPlaintextAuth === true}|${rules}`;
}

interface Waiter {
  resolve: (s: Session | undefined) => void;
  /** A background probe's (ProbeOptions): served after every client callout waiting. */
  background: boolean;
}

/** How a probe is asked (CalloutPool.probe). */
interface ProbeOptions {
  /**
   * Nobody waits for the answer (the verifier's catch-all probe, verify.ts): the probe gives way to client callouts
   * (`busy` at once when any is waiting for a connection; a freed connection goes to a client callout first), and a
   * connection it cannot set up does not suspend the server. The cap, the deadline, the destination policy and a
   * suspension in force apply as to any probe.
   */
  background?: boolean;
}

interface Lane {
  /** Connections open or being opened. */
  open: number;
  /** Of those, the ones whose probe has answered and whose RSET is not through yet (neither idle nor free). */
  resetting: number;
  idle: Session[];
  waiters: Waiter[];
  suspendedUntil: number;
  suspendReason: string;
  /** Credentials digest the idle connections were set up with; a change closes them. */
  authDigest: string;
}

export interface CalloutPool {
  probe(
    server: ServerRoute,
    address: string,
    destinations?: DomainRoute['destinations'],
    options?: ProbeOptions,
  ): Promise<CalloutProbe>;
  /** Open connections and waiting probes per server key (tests, /metrics). */
  stats(): { connections: number; waiting: number };
  close(): void;
}

export function createCalloutPool(opts: CalloutPoolOptions): CalloutPool {
  const now = opts.now ?? (() => performance.now());
  const lanes = new Map<string, Lane>();
  let closed = false;
  const t = opts.timeouts;
  const deadlineMs = opts.deadlineMs ?? 2 * Math.max(t.connectionMs, t.greetingMs, t.socketMs);
  const deadlineText = `no RCPT reply within ${deadlineMs} ms (the callout's deadline)`;

  const laneFor = (key: string): Lane => {
    let lane = lanes.get(key);
    if (!lane) {
      lane = {
        open: 0,
        resetting: 0,
        idle: [],
        waiters: [],
        suspendedUntil: 0,
        suspendReason: '',
        authDigest: '',
      };
      lanes.set(key, lane);
    }
    return lane;
  };

  /**
   * Sets up one connection: MX, credentials, connect (greeting, EHLO, STARTTLS), AUTH. Throws CalloutError, also
   * when `deadline` passes first (the connection being set up is closed).
   */
  const openSession = async (
    server: ServerRoute,
    auth: { user: string; pass: string } | undefined,
    destinations: DomainRoute['destinations'],
    deadline: AbortSignal,
  ): Promise<Session> => {
    const resolver = opts.resolverFor?.(destinations) ?? opts.resolver;
    const targets = await resolveTargets(server, resolver);
    if (!targets.ok) throw new CalloutError(targets.reply.text);
    let last = 'no host to connect to';
    for (const host of targets.hosts) {
      if (deadline.aborted) throw new CalloutError(deadlineText);
      let addresses: string[];
      try {
        addresses = await resolver.addresses(host);
      } catch (err) {
        last = isDestinationDenied(err)
          ? err.message
          : `address lookup for ${host} failed: ${(err as { code?: string }).code ?? String(err)}`;
        continue;
      }
      const address = addresses[0];
      if (address === undefined) continue;
      const conn = new SMTPConnection(
        smtpClientOptions(
          {
            host: address,
            ...(address !== host ? { servername: host } : {}),
            port: server.port,
            tls: server.tls,
            ...(auth ? { auth } : {}),
            ...(server.allowPlaintextAuth === true ? { allowPlaintextAuth: true } : {}),
          },
          { hostname: opts.hostname, timeouts: opts.timeouts },
        ),
      );
      // Until the Session takes over, a failure arrives as the connect()/login() callback or as an 'error' event.
      let failed: ((err: Error) => void) | undefined;
      const onError = (err: Error): void => failed?.(err);
      conn.on('error', onError);
      // the deadline ends the step under way as a failure (nodemailer's own timeouts restart with every byte)
      const expire = (): void => failed?.(new CalloutError(deadlineText));
      deadline.addEventListener('abort', expire, { once: true });
      const step = (run: (done: (err?: Error | null) => void) => void): Promise<Error | undefined> =>
        new Promise((resolve) => {
          failed = resolve;
          if (deadline.aborted) resolve(new CalloutError(deadlineText));
          else run((err) => resolve(err ?? undefined));
        });
      try {
        const connected = await step((done) => conn.connect(done));
        if (connected) {
          conn.close();
          last = `${host}:${server.port}: ${errText(connected)}`;
          // the next MX host only when this one could not be reached
          if (isNetworkError(connected)) continue;
          throw new CalloutError(last);
        }
        opts.onConnection?.(server);
        if (auth) {
          const loggedIn = await step((done) => conn.login({ user: auth.user, pass: auth.pass }, done));
          if (loggedIn) {
            conn.close();
            throw new CalloutError(`${host}:${server.port}: AUTH: ${errText(loggedIn)}`);
          }
        }
      } finally {
        deadline.removeEventListener('abort', expire);
      }
      failed = undefined;
      conn.off('error', onError);
      conn.on('error', () => undefined);
      return new Session(conn, opts.timeouts.socketMs, authDigest(auth));
    }
    throw new CalloutError(last);
  };

  /** Hands a connection that finished a probe to the next waiter, or parks it idle, or closes it. */
  const release = (lane: Lane, s: Session): void => {
    // (a connection still in its RSET when the password rotated was not among the idle ones closed then)
    if (closed || s.dead || s.probes >= opts.maxProbesPerConnection || s.authDigest !== lane.authDigest) {
      s.close();
      lane.open--;
      // a waiter may now open a connection of its own
      nextWaiter(lane)?.resolve(undefined);
      return;
    }
    const w = nextWaiter(lane);
    if (w) return w.resolve(s);
    lane.idle.push(s);
    s.idle(opts.idleMs, () => {
      const i = lane.idle.indexOf(s);
      if (i < 0) return;
      lane.idle.splice(i, 1);
      lane.open--;
      s.close();
    });
  };

  /**
   * A connection to use: an idle one, a new one (under the cap), or one handed over after waiting; or why there is
   * none. The deadline ends the wait (the probe leaves the queue) and the setup under way.
   */
  const acquire = async (
    lane: Lane,
    server: ServerRoute,
    auth: { user: string; pass: string } | undefined,
    cap: number,
    destinations: DomainRoute['destinations'],
    deadline: AbortSignal,
    background: boolean,
  ): Promise<{ session: Session; reused: boolean } | CalloutProbe> => {
    for (;;) {
      if (deadline.aborted) return { kind: 'failed', text: deadlineText };
      const idle = lane.idle.pop();
      if (idle) {
        idle.busy();
        if (!idle.dead) return { session: idle, reused: true };
        lane.open--;
        continue;
      }
      // A connection finishing its RSET is free in a moment: wait for it (one waiter each) rather than open another.
      const resetSoon = lane.resetting > lane.waiters.length && lane.waiters.length < opts.maxQueued;
      if (!resetSoon && lane.open < cap) {
        lane.open++;
        try {
          return { session: await openSession(server, auth, destinations, deadline), reused: false };
        } catch (err) {
          lane.open--;
          if (deadline.aborted) {
            // This probe ran out of time, maybe after waiting in the queue for most of it: that says nothing about
            // the server, so no suspension. The slot is free: the next waiter may open a connection.
            nextWaiter(lane)?.resolve(undefined);
            return { kind: 'failed', text: deadlineText };
          }
          const text = errText(err);
          if (background) {
            // no client's answer depends on it: no suspension (the next client callout tries for itself), and the
            // slot is free for the next waiter
            nextWaiter(lane)?.resolve(undefined);
            return { kind: 'failed', text };
          }
          if (opts.suspendMs > 0) {
            lane.suspendedUntil = now() + opts.suspendMs;
            lane.suspendReason = text;
          }
          // the waiters would fail the same way: let them see the suspension
          for (const w of lane.waiters.splice(0)) w.resolve(undefined);
          return { kind: 'failed', text };
        }
      }
      if (lane.waiters.length >= opts.maxQueued || (background && lane.waiters.length > 0)) {
        return {
          kind: 'busy',
          text: `${lane.open} callouts to ${server.name} in progress and ${lane.waiters.length} waiting`,
        };
      }
      const handed = await waitForConnection(lane, deadline, background);
      if (handed) return { session: handed, reused: true };
      if (lane.suspendedUntil > now())
        return { kind: 'suspended', text: `callouts suspended: ${lane.suspendReason}` };
    }
  };

  /** One probe on the lane's connections, until its answer or the deadline (then it cleans up after itself). */
  const probeOn = async (
    lane: Lane,
    server: ServerRoute,
    address: string,
    auth: { user: string; pass: string } | undefined,
    destinations: DomainRoute['destinations'],
    deadline: AbortSignal,
    background: boolean,
  ): Promise<CalloutProbe> => {
    const cap = Math.max(1, Math.min(opts.maxConnections, server.maxConnections));
    // A reused connection the server has closed meanwhile fails at once: one more try on a fresh one.
    for (let attempt = 0; ; attempt++) {
      const got = await acquire(lane, server, auth, cap, destinations, deadline, background);
      if ('kind' in got) return got;
      if (deadline.aborted) {
        // handed over just as the deadline passed: it is a good connection, for the next probe
        release(lane, got.session);
        return { kind: 'failed', text: deadlineText };
      }
      try {
        const { result, reset } = await got.session.probe(address, deadline);
        // the answer goes back now; the connection returns to the lane once RSET is through
        lane.resetting++;
        void reset.then(() => {
          lane.resetting--;
          release(lane, got.session);
        });
        return result;
      } catch (err) {
        got.session.close();
        release(lane, got.session);
        if (deadline.aborted) return { kind: 'failed', text: deadlineText };
        if (got.reused && attempt === 0) continue;
        return { kind: 'failed', text: errText(err) };
      }
    }
  };

  const probe = async (
    server: ServerRoute,
    address: string,
    destinations?: DomainRoute['destinations'],
    options?: ProbeOptions,
  ): Promise<CalloutProbe> => {
    const background = options?.background === true;
    if (closed) return { kind: 'failed', text: 'shutting down' };
    if (/[\s<>]/.test(address)) return { kind: 'failed', text: 'address not sent: whitespace or <>' };
    let auth: { user: string; pass: string } | undefined;
    if (server.authSecretRef) {
      auth = await opts.credentials(server.authSecretRef).catch(() => undefined);
      if (!auth) {
        const ref = server.authSecretRef;
        return {
          kind: 'failed',
          text: `credentials ${ref.namespace}/${ref.name} for server ${server.name} not available`,
        };
      }
    }
    const refused = plaintextAuthRefusal(server, auth !== undefined);
    if (refused !== undefined) return { kind: 'failed', text: refused };
    const lane = laneFor(laneKey(server, destinations));
    // a rotated password: connections set up with the old one are not reused
    const digest = authDigest(auth);
    if (digest !== lane.authDigest) {
      for (const s of lane.idle.splice(0)) {
        lane.open--;
        s.close();
      }
      lane.authDigest = digest;
    }
    if (lane.suspendedUntil > now())
      return { kind: 'suspended', text: `callouts suspended: ${lane.suspendReason}` };
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), deadlineMs);
    try {
      // whichever comes first; probeOn, told by the signal, closes what it was using and leaves the queue
      return await Promise.race([
        probeOn(lane, server, address, auth, destinations, deadline.signal, background),
        aborted(deadline.signal).then((): CalloutProbe => ({ kind: 'failed', text: deadlineText })),
      ]);
    } finally {
      clearTimeout(timer);
    }
  };

  return {
    probe,
    stats() {
      let connections = 0;
      let waiting = 0;
      for (const l of lanes.values()) {
        connections += l.open;
        waiting += l.waiters.length;
      }
      return { connections, waiting };
    },
    close() {
      closed = true;
      for (const l of lanes.values()) {
        for (const s of l.idle.splice(0)) s.close();
        for (const w of l.waiters.splice(0)) w.resolve(undefined);
        l.open = 0;
      }
    },
  };
}

/** The waiter a freed connection (or slot) goes to, taken from the queue: the first client callout, else a probe. */
function nextWaiter(lane: Lane): Waiter | undefined {
  const i = lane.waiters.findIndex((w) => !w.background);
  return lane.waiters.splice(i < 0 ? 0 : i, 1)[0];
}

/** Waits in the lane's queue for a connection handed over (undefined: look again); the deadline takes it out. */
function waitForConnection(
  lane: Lane,
  deadline: AbortSignal,
  background: boolean,
): Promise<Session | undefined> {
  return new Promise((resolve) => {
    const leave = (): void => {
      const i = lane.waiters.indexOf(waiter);
      if (i >= 0) lane.waiters.splice(i, 1);
      resolve(undefined);
    };
    const waiter: Waiter = {
      resolve: (s) => {
        deadline.removeEventListener('abort', leave);
        resolve(s);
      },
      background,
    };
    deadline.addEventListener('abort', leave, { once: true });
    lane.waiters.push(waiter);
  });
}

/** The credentials a connection is set up with, as the lane compares them (never the password itself). */
function authDigest(auth: { user: string; pass: string } | undefined): string {
  return auth ? createHash('sha256').update(`${auth.user}\0${auth.pass}`).digest('hex') : '';
}

/** Resolves when the signal aborts (never, when it does not). */
function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
}

function isNetworkError(err: Error): boolean {
  const code = (err as { code?: string }).code ?? '';
  return ['ECONNECTION', 'ESOCKET', 'ETIMEDOUT', 'EDNS'].includes(code);
}

function errText(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const e = err as Error & { code?: string; response?: string };
  const text = e.response ? firstLine(e.response) : e.message;
  return e.code && !(err instanceof CalloutError) ? `${e.code}: ${text}` : text;
}
