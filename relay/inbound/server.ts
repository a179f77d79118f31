// The inbound SMTP server: smtp-server configured for an inbound MX relay (no AUTH), with each callback delegating
// to its phase module (connect, helo, mail, rcpt, data) and every verdict going through the one adapter.
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import {
  SMTPServer,
  type SMTPServerDataStream,
  type SMTPServerEnvelope,
  type SMTPServerSession,
} from 'smtp-server';
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { BareLfMode } from '../config.ts';
import type { AcceptedRecipient, EnvelopeMeta, SpoolWriter } from '../spool/types.ts';
import type { RelayMetrics } from '../telemetry/metrics.ts';
import { toSmtpError } from './adapter.ts';
import { ConnectionCounter, GreetingGate, decideConnect } from './connect.ts';
import { receiveData } from './data.ts';
import { protocolName, receivedHeaderBytes, sanitizeHelo } from './helo.ts';
import { traceMatcher } from './trace.ts';
import { decideMail } from './mail.ts';
import {
  LEGS_PARAM,
  ORIGIN_PARAM,
  handoffParamVerdict,
  narrowLegs,
  parseLegRoles,
  parseOrigin,
  type Origin,
} from './handoff.ts';
import { assertSmtpServerPatched } from './patched.ts';
import { MAIL_PARAMS, RCPT_PARAMS, unsupportedParameter } from './params.ts';
import { decideRcpt, type RecipientRouter, type Verifier } from './rcpt.ts';
import {
  pickEviction,
  sweepSession,
  timeoutsInForce,
  underStress,
  type SessionFacts,
  type SlowClientPolicy,
} from './slow.ts';
import { MAX_REPLY_TEXT, REPLIES, reject, tempfail, type Refusal, type Verdict } from './verdict.ts';
import { formatReply } from '../../routing/resolve.ts';
import { clip } from '../../lib/one-line.ts';
import { clientNetwork, DEFAULT_IPV6_PREFIX } from '../../lib/client-network.ts';
import { safeDelay } from '../../routing/timer.ts';
import { UnknownRecipientLimiter, countsAsUnknown, tooManyUnknownRecipients } from './unknown-limit.ts';
import {
  DEFAULT_MAX_RECIPIENTS_IN_FLIGHT,
  RecipientsInFlight,
  openTransaction,
  tooManyRecipientsInFlight,
  type Held,
} from './in-flight.ts';

export interface InboundOptions {
  hostname: string;
  maxMessageSize: number;
  maxRecipients: number;
  /** Recipients held in every transaction not yet ended; more get 452 4.5.3 (in-flight.ts). Default 50,000. */
  maxRecipientsInFlight?: number;
  maxConnections: number;
  maxConnectionsPerIp: number;
  /** The per-IP limits count an IPv6 client by its network of this prefix length (default 64; lib/client-network.ts). */
  clientIpv6Prefix?: number;
  idleTimeoutMs: number;
  dataTimeoutMs: number;
  /** A command line must be complete this long after its first byte (default 30 s); then 421 4.4.2. */
  commandTimeoutMs?: number;
  /** A session ends this long after it opened, once the client owes input and is not sending a message (30 min). */
  sessionTimeoutMs?: number;
  /** Idle and command timeout under stress, when the connection table is 3/4 full (default 10 s). */
  stressTimeoutMs?: number;
  /** How often the slow-client sweeper runs (default 1 s). */
  sweepIntervalMs?: number;
  bareLf: BareLfMode;
  greetingDelayMs: number;
  /** How long an address that passed the early-talker check is greeted at once (default 24 h; 0: never). */
  greetingPassTtlMs?: number;
  maxLineLength?: number;
  /** Received: fields (the relay's own included) at which a message is refused as a loop; default 50 (Postfix). */
  hopLimit?: number;
  /** The installation's name in the relay's Received: trace (trace.ts); a message carrying it is a loop. */
  clusterId?: string;
  /** Unknown recipients per session before 421 4.7.0 (unknown-limit.ts); 0 or absent: no limit. */
  maxUnknownRecipients?: number;
  /** Unknown recipients per client address within 10 minutes before 421 4.7.0; 0 or absent: no limit. */
  maxUnknownRecipientsPerIp?: number;
  /**
   * Refusals in one session, those the unknown-recipient limit counts aside, before the next one is replaced by
   * 421 4.7.0 and the connection is closed (Postfix's smtpd_hard_error_limit); an accepted message starts the count
   * again. 0 or absent: no limit.
   */
  maxErrors?: number;
  tls?: { key: Buffer; cert: Buffer };
}

export interface InboundDeps {
  options: InboundOptions;
  /** The routing view of the current revision, undefined until a table is loaded. Read at every RCPT. */
  router: () => RecipientRouter | undefined;
  spool: SpoolWriter;
  verifier: Verifier;
  metrics: RelayMetrics;
  logger: Logger;
  clock?: () => Date;
  /** Told the size of every message chunk as it streams in (the buffer governor, relay/memory.ts). */
  onBodyBytes?: (n: number, messageBytes: number) => void;
  /**
   * Whether a client address is a peer relay, which may send the hand-off parameters (handoff.ts, peer-trust.ts);
   * asked only when a client sends one. Absent: no client is.
   */
  isPeer?: (client: string) => Promise<boolean>;
}

export interface Inbound {
  readonly server: SMTPServer;
  listen(port: number, host: string): Promise<{ port: number; host: string }>;
  /** Stop accepting: new connections and new transactions get 421; idle sessions are told 421 and closed. */
  startDraining(): void;
  /** Open connections (sessions in progress). */
  readonly connections: number;
  /** Whether the connection table is under stress (3/4 full at the last sweep): the shorter timeouts are in force. */
  readonly stressed: boolean;
  /** Closes the listener; sessions still open after graceMs get 421 and are closed. */
  close(graceMs: number): Promise<void>;
  /** STARTTLS from now on with this certificate and key (checked by the caller); sessions already in TLS keep theirs. */
  updateTls(pair: { key: Buffer; cert: Buffer }): void;
  /** Recipients accepted in transactions not yet ended, across all sessions (--max-recipients-in-flight). */
  readonly recipientsInFlight: number;
}

interface Transaction extends Held {
  recipients: Map<string, AcceptedRecipient>;
  revision: string;
}

/** The part of smtp-server's connection object the drain needs (not in its public types). */
interface ConnectionInternals {
  session?: SMTPServerSession;
  remoteAddress?: string;
  _dataStream?: unknown;
  /** The command parser; lineStartedAt is added by the patch (relay/inbound/patched.ts checks it). */
  _parser?: { lineStartedAt?: number; _dataMode?: boolean; writableLength?: number } | null;
  /** A handler (a callout, the spool) has not answered yet: the client waits for the relay. */
  _handlerPending?: boolean;
  _closing?: boolean;
  /** The socket the idle timer runs on (the TLS socket after STARTTLS). */
  _socket?: {
    setTimeout(ms: number): unknown;
    once(event: 'data', f: () => void): unknown;
    /** The client's FIN was read (allowHalfOpen: the relay's side stays open for the replies it owes). */
    readonly readableEnded?: boolean;
  };
  send(code: number, text: string, context?: string | false): void;
  close(): void;
}

/** Per SMTPServer: what to do with the envelope a connection's _resetSession is about to replace. */
const resetHooks = new WeakMap<object, (envelope: SMTPServerEnvelope | undefined) => void>();
let resetHooked = false;

/**
 * Wraps SMTPConnection.prototype._resetSession once per process: the recipients-in-flight count is released through
 * it. Without the method the count would only ever grow, so its absence stops the start.
 */
function hookResetSession(): void {
  if (resetHooked) return;
  const proto = SMTPConnection.prototype as unknown as {
    _resetSession?: (this: ResettingConnection) => void;
  };
  const reset = proto._resetSession;
  if (typeof reset !== 'function')
    throw new Error(
      'smtp-server: SMTPConnection._resetSession is missing; relay/inbound/server.ts relies on it',
    );
  proto._resetSession = function (this: ResettingConnection): void {
    // no session yet at the first call, before the greeting
    resetHooks.get(this._server)?.(this.session?.envelope);
    reset.call(this);
  };
  resetHooked = true;
}

interface ResettingConnection {
  _server: object;
  session?: { envelope?: SMTPServerEnvelope };
}

/** The connection each socket error smtp-server reports came from (SMTPConnection._onError), for its log line. */
const errorSources = new WeakMap<object, ConnectionInternals>();
let onErrorHooked = false;

/**
 * Wraps SMTPConnection.prototype._onError once per process to note which connection an error came from: the
 * server's 'error' event carries the error alone. Without the method the line about a lost client names no session.
 */
function hookOnError(): void {
  if (onErrorHooked) return;
  onErrorHooked = true;
  const proto = SMTPConnection.prototype as unknown as {
    _onError?: (this: ConnectionInternals, err: unknown) => void;
  };
  const onError = proto._onError;
  if (typeof onError !== 'function') return;
  proto._onError = function (this: ConnectionInternals, err: unknown): void {
    if (typeof err === 'object' && err !== null) errorSources.set(err, this);
    onError.call(this, err);
  };
}

/**
 * Socket errors that say the client went away (a reset, a write to a closed peer, a dead network path): smtp-server
 * reports them only inside a transaction (outside one it closes quietly). They are the client's, not the relay's.
 */
const CLIENT_GONE = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ECONNABORTED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ERR_STREAM_PREMATURE_CLOSE',
  'ERR_STREAM_DESTROYED',
  'ERR_SOCKET_CLOSED',
]);

/** The code of an error that says the client went away, else undefined. */
function clientGoneCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null || !('code' in err)) return undefined;
  const code = err.code;
  return typeof code === 'string' && CLIENT_GONE.has(code) ? code : undefined;
}

/** How far the transaction of a connection that lost its client had come. */
function phaseOf(c: ConnectionInternals | undefined): string | undefined {
  if (c === undefined) return undefined;
  if (c._dataStream) return 'DATA';
  const env = c.session?.envelope;
  if (env !== undefined && env.rcptTo.length > 0) return 'RCPT TO';
  if (env !== undefined && env.mailFrom !== false) return 'MAIL FROM';
  return 'connect';
}

export function createInbound(deps: InboundDeps): Inbound {
  assertSmtpServerPatched();
  hookResetSession();
  hookOnError();
  const o = deps.options;
  const clock = deps.clock ?? (() => new Date());
  const log = deps.logger;
  const m = deps.metrics;
  const counter = new ConnectionCounter();
  /** What the per-IP limits count a client address under: itself, or its IPv6 network. */
  const clientKey = (address: string): string =>
    clientNetwork(address, o.clientIpv6Prefix ?? DEFAULT_IPV6_PREFIX);
  /** session id -> the key its client is counted under (clientKey), for the sessions the counter holds */
  const counted = new Map<string, string>();
  const gate = new GreetingGate({
    delayMs: safeDelay(o.greetingDelayMs),
    ...(o.greetingPassTtlMs !== undefined ? { passTtlMs: o.greetingPassTtlMs } : {}),
  });
  const txns = new WeakMap<SMTPServerEnvelope, Transaction>();
  const unknownLimit = new UnknownRecipientLimiter({
    perSession: o.maxUnknownRecipients ?? 0,
    perAddress: o.maxUnknownRecipientsPerIp ?? 0,
  });
  /** session id -> unknown recipients named in it */
  const unknownCount = new Map<string, number>();
  const inFlight = new RecipientsInFlight(o.maxRecipientsInFlight ?? DEFAULT_MAX_RECIPIENTS_IN_FLIGHT);
  /**
   * The transaction of an envelope that smtp-server replaces, or of a session that `closed`, leaves the count. A
   * closed session's transaction without recipients is recorded as ended: a RCPT still being routed then (a callout)
   * is answered after the close, and its recipient must not join the count, which nothing would release again.
   * smtp-server replaces an envelope only between commands, never while a RCPT is pending.
   */
  const endTransaction = (env: SMTPServerEnvelope | undefined, closed: boolean): void => {
    if (env === undefined) return;
    const t = txns.get(env);
    if (t !== undefined) inFlight.end(t);
    else if (closed) txns.set(env, { recipients: new Map(), revision: '', held: 0, ended: true });
  };
  let draining = false;
  const policy: SlowClientPolicy = {
    idleTimeoutMs: o.idleTimeoutMs,
    commandTimeoutMs: o.commandTimeoutMs ?? 30_000,
    sessionTimeoutMs: o.sessionTimeoutMs ?? 30 * 60_000,
    stressTimeoutMs: o.stressTimeoutMs ?? 10_000,
    stressRatio: 0.75,
    maxConnections: o.maxConnections,
  };
  /** Sessions by id: when they opened, whether they sent mail, whether they are being evicted. */
  const tracked = new Map<
    string,
    {
      openedAt: number;
      sentMail: boolean;
      evicting: boolean;
      /** The last sweep found the client half-closed and the session idle: the next one closes it. */
      doneIdle?: boolean;
      /** Refusals counted against --max-errors since the session opened or last had a message accepted. */
      errors: number;
    }
  >();
  let evicting = 0;
  let stressed = false;

  const isPeer = (client: string): Promise<boolean> =>
    deps.isPeer === undefined ? Promise.resolve(false) : deps.isPeer(client).catch(() => false);

  // the loop check's matcher for this relay's trace, compiled once (not per message)
  const ownTrace = o.clusterId !== undefined ? traceMatcher(o.clusterId) : undefined;

  const maxErrors = o.maxErrors ?? 0;
  /**
   * The reply to a refusal, counted and logged. Each refusal counts against --max-errors but those the
   * unknown-recipient limit counts (they have their own limits, per session and per address): the one past the limit
   * is replaced by 421 4.7.0, which closes the connection, so a session logs at most --max-errors of them (plus
   * --max-unknown-recipients) however many commands it pipelines. A 421 closes the connection anyway and stays as it is.
   * The text is cut to MAX_REPLY_TEXT: the reply and its log line never carry a client's text whole.
   */
  const refuse = (v: Verdict, what: string, session: SMTPServerSession): Error | null => {
    if (v.verdict === 'accept') return null;
    let sent: Refusal = v;
    const t = tracked.get(session.id);
    if (t !== undefined && maxErrors > 0 && !countsAsUnknown(v.reason)) {
      t.errors++;
      if (t.errors > maxErrors && v.reply.code !== 421) sent = REPLIES.tooManyErrors();
    }
    if (sent.reply.text.length > MAX_REPLY_TEXT)
      sent = { ...sent, reply: { ...sent.reply, text: clip(sent.reply.text, MAX_REPLY_TEXT) } };
    m.messagesRejected.inc({ reason: sent.reason });
    log.info(
      { session: session.id, client: session.remoteAddress, phase: what, reply: formatReply(sent.reply) },
      'refused',
    );
    return toSmtpError(sent);
  };

  const server = new SMTPServer({
    name: o.hostname,
    banner: 'mailroute',
    size: o.maxMessageSize,
    maxRecipients: o.maxRecipients,
    // No maxClients: a full table is handled in onConnect, which may evict an idle client instead (slow.ts).
    socketTimeout: safeDelay(o.idleTimeoutMs),
    closeTimeout: 1000,
    authOptional: true,
    disabledCommands: o.tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    hideDSN: true,
    hideREQUIRETLS: true,
    hideENHANCEDSTATUSCODES: false,
    disableReverseLookup: true,
    // A client's FIN does not end the relay's side (net.Server's default would, at once): the replies it is owed
    // still go out, e.g. the 250 of a message pipelined with its FIN; the sweep closes the session after (slow.ts).
    allowHalfOpen: true,
    logger: false,
    greetingDelay: (address: string) => gate.delayFor(address),
    // The relay works on A-labels: smtp-server would otherwise rewrite a lowercase xn-- domain to Unicode (patch).
    decodePunycode: false,
    ...(o.tls ? { key: o.tls.key, cert: o.tls.cert } : {}),

    onConnect(session, cb) {
      const ip = session.remoteAddress;
      const client = clientKey(ip);
      counted.set(session.id, client);
      const n = counter.open(client);
      m.connections.inc();
      const v = decideConnect({
        remoteAddress: ip,
        fromAddress: n,
        maxPerAddress: o.maxConnectionsPerIp,
        draining,
      });
      if (v.verdict === 'accept' && counter.total - evicting > o.maxConnections && !makeRoom()) {
        return cb(refuse(REPLIES.tableFull(), 'connect', session));
      }
      if (v.verdict === 'accept')
        tracked.set(session.id, { openedAt: performance.now(), sentMail: false, evicting: false, errors: 0 });
      cb(refuse(v, 'connect', session));
    },

    onClose(session) {
      const t = tracked.get(session.id);
      if (t !== undefined) {
        if (t.evicting) evicting--;
        tracked.delete(session.id);
      }
      unknownCount.delete(session.id);
      // every session ends here (QUIT, the client gone, evicted, timed out, refused at connect, shutdown)
      endTransaction(session.envelope, true); // no envelope yet when it closed before the greeting
      const client = counted.get(session.id);
      if (client === undefined) return;
      counted.delete(session.id);
      counter.close(client);
      m.connections.dec();
    },

    onMailFrom(address, session, cb) {
      const unsupported = unsupportedParameter(address.args, MAIL_PARAMS);
      if (unsupported !== undefined) return cb(refuse(unsupported, 'MAIL FROM', session));
      const mailFrom = (): void => {
        const size =
          address.args !== false && typeof address.args.SIZE === 'string'
            ? Number(address.args.SIZE)
            : undefined;
        const v = decideMail({
          address: address.address,
          ...(size !== undefined ? { declaredSize: size } : {}),
          maxMessageSize: o.maxMessageSize,
          draining,
          routingLoaded: deps.router() !== undefined,
          smtputf8: address.args !== false && address.args.SMTPUTF8 === true,
        });
        // A client that waited for the greeting and got this far passed the early-talker check.
        if (v.verdict === 'accept') gate.pass(session.remoteAddress);
        cb(refuse(v, 'MAIL FROM', session));
      };
      // A hand-off from a draining peer relay names the message's queue id there (handoff.ts); from anyone else the
      // parameter is not supported.
      const originArg = address.args === false ? undefined : address.args[ORIGIN_PARAM];
      if (originArg === undefined) return mailFrom();
      void isPeer(session.remoteAddress).then((peer) => {
        const notPeer = handoffParamVerdict(ORIGIN_PARAM, peer);
        if (notPeer !== undefined) return cb(refuse(notPeer, 'MAIL FROM', session));
        const origin = parseOrigin(originArg);
        if (typeof origin === 'string')
          return cb(refuse(reject('BadParameter', 501, '5.5.4', origin), 'MAIL FROM', session));
        mailFrom();
      });
    },

    onRcptTo(address, session, cb) {
      const unsupported = unsupportedParameter(address.args, RCPT_PARAMS);
      if (unsupported !== undefined) return cb(refuse(unsupported, 'RCPT TO', session));
      const client = counted.get(session.id) ?? clientKey(session.remoteAddress);
      // 421 closes the connection (smtp-server); pipelined commands after it are dropped with it
      if (unknownLimit.exceeded(client, unknownCount.get(session.id) ?? 0))
        return cb(refuse(tooManyUnknownRecipients(), 'RCPT TO', session));
      // refused before any routing or callout work; a RCPT being routed when the bound is reached may still take one
      if (inFlight.full) return cb(refuse(tooManyRecipientsInFlight(), 'RCPT TO', session));
      // A hand-off keeps only the legs still open on the relay that hands the message over (handoff.ts); only a
      // peer relay may name them: from anyone else the parameter is not supported (the recipient keeps its plan).
      const legsArg = address.args === false ? undefined : address.args[LEGS_PARAM];
      const rcptTo = (): void => {
        decideRcpt(address.address, {
          router: deps.router(),
          verifier: deps.verifier,
          now: clock,
          smtputf8: session.envelope.smtpUtf8 === true,
        }).then(
          (d) => {
            if (d.verdict !== 'accept') {
              if (countsAsUnknown(d.reason)) {
                unknownCount.set(session.id, (unknownCount.get(session.id) ?? 0) + 1);
                unknownLimit.record(client);
              }
              return cb(refuse(d, 'RCPT TO', session));
            }
            if (legsArg !== undefined) {
              const roles = parseLegRoles(legsArg);
              if (typeof roles === 'string')
                return cb(refuse(reject('BadParameter', 501, '5.5.4', roles), 'RCPT TO', session));
              const legs = narrowLegs(d.accepted.legs, roles);
              if (typeof legs === 'string')
                return cb(
                  refuse(
                    tempfail(
                      'HandoffNoLeg',
                      451,
                      '4.3.0',
                      `${d.accepted.recipient}: ${legs}; not taken over`,
                    ),
                    'RCPT TO',
                    session,
                  ),
                );
              d = { ...d, accepted: { ...d.accepted, legs } };
            }
            let t = txns.get(session.envelope);
            if (!t) {
              t = { recipients: new Map(), revision: d.revision, ...openTransaction() };
              txns.set(session.envelope, t);
            }
            t.recipients.set(d.accepted.recipient.toLowerCase(), d.accepted);
            inFlight.hold(t, t.recipients.size);
            t.revision = d.revision;
            cb(null);
          },
          (err: unknown) => {
            log.error({ err, session: session.id }, 'RCPT TO: routing failed');
            cb(refuse(REPLIES.spoolError(), 'RCPT TO', session));
          },
        );
      };
      if (legsArg === undefined) return rcptTo();
      void isPeer(session.remoteAddress).then((peer) => {
        const notPeer = handoffParamVerdict(LEGS_PARAM, peer);
        if (notPeer !== undefined) return cb(refuse(notPeer, 'RCPT TO', session));
        rcptTo();
      });
    },

    onData(stream: SMTPServerDataStream, session, cb) {
      const env = session.envelope;
      const t = txns.get(env);
      if (!t || t.recipients.size === 0) {
        // every RCPT was refused but smtp-server still counted one: cannot happen, refuse safely
        stream.resume();
        return cb(refuse(REPLIES.spoolError(), 'DATA', session));
      }
      const recipients = [...t.recipients.values()];
      const now = clock();
      const originArg =
        env.mailFrom === false || env.mailFrom.args === false ? undefined : env.mailFrom.args[ORIGIN_PARAM];
      const parsedOrigin = originArg === undefined ? undefined : parseOrigin(originArg);
      const origin: Origin | undefined = typeof parsedOrigin === 'object' ? parsedOrigin : undefined;
      const tls = session.tlsOptions !== false ? session.tlsOptions : undefined;
      const meta: EnvelopeMeta = {
        mailFrom: env.mailFrom === false ? '' : env.mailFrom.address,
        recipients,
        clientAddress: session.remoteAddress,
        clientHostname: session.clientHostname || '',
        helo: sanitizeHelo(session.hostNameAppearsAs),
        receivedAt: now.toISOString(),
        revision: t.revision,
        smtputf8: env.smtpUtf8 === true,
        body8bit: env.bodyType === '8bitmime',
        ...(origin ? { origin } : {}),
      };
      const header = receivedHeaderBytes({
        helo: session.hostNameAppearsAs,
        clientAddress: session.remoteAddress,
        clientHostname:
          typeof session.clientHostname === 'string' && !session.clientHostname.startsWith('[')
            ? session.clientHostname
            : '',
        byHostname: o.hostname,
        ...(o.clusterId !== undefined ? { clusterId: o.clusterId } : {}),
        protocol: protocolName(session.openingCommand, session.secure, Boolean(session.user)),
        id: `${session.id}.${session.transaction}`,
        ...(recipients.length === 1 && recipients[0] ? { forRecipient: recipients[0].recipient } : {}),
        smtputf8: env.smtpUtf8 === true,
        ...(tls ? { tls: { protocol: tls.version, cipher: tls.name } } : {}),
        date: now,
      });
      receiveData(stream, {
        spool: deps.spool,
        limits: {
          bareLf: o.bareLf,
          maxBytes: o.maxMessageSize,
          hopLimit: o.hopLimit ?? 50,
          ...(ownTrace !== undefined ? { ownTrace } : {}),
          maxLineLength: o.maxLineLength ?? 64 * 1024,
        },
        receivedHeader: header,
        meta,
        dataTimeoutMs: o.dataTimeoutMs,
        ...(deps.onBodyBytes ? { onBodyBytes: deps.onBodyBytes } : {}),
        onTimeout: () => {
          const conn = findConnection(session.id);
          conn?.send(421, REPLIES.dataTimeout().reply.text, '4.4.2');
        },
      }).then(
        (r) => {
          if (r.verdict !== 'accept') return cb(refuse(r, 'DATA', session));
          m.messagesAccepted.inc();
          const tr = tracked.get(session.id);
          if (tr !== undefined) {
            tr.sentMail = true;
            // as Postfix's error count: the errors a client may make "without delivering mail"
            tr.errors = 0;
          }
          // the session's unknown recipients too (the per-address window is not reset): a mailing-list server whose
          // every message names a few stale addresses is not cut off after the 20th of them on a long connection
          unknownCount.delete(session.id);
          // the 250 first: the log line is not part of the accept, and would only delay the reply
          cb(null, `2.0.0 queued as ${r.id}`);
          log.info(
            {
              queueId: r.id,
              session: session.id,
              client: session.remoteAddress,
              sender: meta.mailFrom,
              recipients: recipients.length,
              legs: recipients.reduce((n, rc) => n + rc.legs.length, 0),
              size: r.size,
              revision: meta.revision,
              ...(origin ? { origin } : {}),
              ...(r.normalized > 0 ? { normalizedLineEnds: r.normalized } : {}),
            },
            'accepted',
          );
        },
        (err: unknown) => {
          log.error({ err, session: session.id }, 'DATA: spool failed');
          stream.resume();
          cb(refuse(REPLIES.spoolError(), 'DATA', session));
        },
      );
    },
  });

  const internals = (): Set<ConnectionInternals> =>
    (server as unknown as { connections: Set<ConnectionInternals> }).connections;
  const findConnection = (sessionId: string): ConnectionInternals | undefined => {
    for (const c of internals()) if (c.session?.id === sessionId) return c;
    return undefined;
  };

  // Every end of a transaction but the session's close goes through smtp-server's _resetSession, which replaces
  // session.envelope: the recipients of the envelope it drops leave the in-flight count right then (an RSET followed
  // by silence does not hold them until the close). One wrapper on the prototype (hookResetSession) finds this
  // server's hook by the connection's server.
  resetHooks.set(server, (env) => endTransaction(env, false));

  // A client that went away inside a transaction (smtp-server reports nothing outside one) is the client's doing, as
  // common as flaky networks: one info line with the phase and the address, no stack. Anything else stays a warning.
  server.on('error', (err: Error & { remoteAddress?: unknown }) => {
    const code = clientGoneCode(err);
    if (code === undefined) {
      log.warn({ err }, 'smtp connection error');
      return;
    }
    const c = errorSources.get(err);
    const client = c?.session?.remoteAddress ?? c?.remoteAddress ?? err.remoteAddress;
    log.info(
      {
        session: c?.session?.id,
        client: typeof client === 'string' ? client : undefined,
        phase: phaseOf(c),
        code,
      },
      'client connection lost',
    );
  });
  // The client's FIN (allowHalfOpen keeps the relay's side open): the session is closed at once when nothing is owed
  // to it, as net.Server's default did; else once it is answered (the sweep). Heard on the accepted socket, so no
  // connection is searched for per connection: only for a FIN on a socket the relay has not ended itself (a client
  // that half-closed, not one that closes after the relay's own close after 221).
  server.server.on('connection', (socket: Socket) => {
    socket.once('end', () =>
      setImmediate(() => {
        if (!socket.writable) return;
        for (const c of internals()) if ((c._socket as unknown) === socket) return closeIfAnswered(c);
      }),
    );
  });

  const factsOf = (c: ConnectionInternals, t: { openedAt: number; sentMail: boolean }): SessionFacts => ({
    openedAt: t.openedAt,
    lineStartedAt: c._parser?.lineStartedAt ?? 0,
    busy: Boolean(c._dataStream) || c._parser?._dataMode === true || c._handlerPending === true,
    sentMail: t.sentMail,
    clientDone: c._socket?.readableEnded === true,
  });
  /** A half-closed client that the relay owes nothing (no command in hand, none unread) is let go at once. */
  const closeIfAnswered = (c: ConnectionInternals): void => {
    const t = c.session ? tracked.get(c.session.id) : undefined;
    if (t === undefined || c._closing === true) return;
    if (!factsOf(c, t).busy && (c._parser?.writableLength ?? 0) === 0) c.close();
  };
  /** Closes one session with a 421, counted under `reason`. */
  const drop = (c: ConnectionInternals, reason: string, text: string, enhanced: string): void => {
    const session = c.session;
    m.messagesRejected.inc({ reason });
    log.info(
      { session: session?.id, client: session?.remoteAddress, reason },
      'closed a slow or idle client',
    );
    c.send(421, text, enhanced);
  };
  /** The table is full: evict the oldest client that sent no mail and is not busy. False when there is none. */
  const makeRoom = (): boolean => {
    const candidates: [ConnectionInternals, SessionFacts][] = [];
    for (const c of internals()) {
      const t = c.session ? tracked.get(c.session.id) : undefined;
      if (t === undefined || t.evicting || c._closing === true) continue;
      candidates.push([c, factsOf(c, t)]);
    }
    const victim = pickEviction(candidates, performance.now());
    const t = victim?.session ? tracked.get(victim.session.id) : undefined;
    if (victim === undefined || t === undefined) return false;
    t.evicting = true;
    evicting++;
    const r = REPLIES.evicted().reply;
    drop(victim, 'Evicted', r.text, r.enhanced);
    return true;
  };
  /** Connections whose idle timer still runs at the stress timeout, waiting for their next bytes to lengthen it. */
  const shortUntilData = new WeakSet<object>();
  /**
   * Sets a connection's idle timer to the timeout in force. Entering stress shortens it at once. Leaving stress
   * lengthens it only when the client next sends something: otherwise the first idle clients closed under stress
   * would end it, and the rest, idle as long, would get the long timeout back. Sets the duration only; the timer's
   * listener stays the one smtp-server armed (re-arming adds a listener each time).
   */
  const retime = (c: ConnectionInternals): void => {
    const socket = c._socket;
    if (socket === undefined) return;
    const inForce = (): number => safeDelay(timeoutsInForce(policy, stressed).idleMs);
    if (stressed) {
      socket.setTimeout(inForce());
      return;
    }
    if (shortUntilData.has(socket)) return;
    shortUntilData.add(socket);
    socket.once('data', () => {
      shortUntilData.delete(socket);
      socket.setTimeout(inForce());
    });
  };
  const sweep = (): void => {
    const now = performance.now(); // slow.ts: monotonic, as lineStartedAt
    const nowStressed = underStress(counter.total, policy);
    const { idleMs, commandMs } = timeoutsInForce(policy, nowStressed);
    if (nowStressed !== stressed) {
      stressed = nowStressed;
      m.stress.set(stressed ? 1 : 0);
      (server.options as { socketTimeout?: number }).socketTimeout = safeDelay(idleMs);
      log.warn(
        { connections: counter.total, idleTimeoutMs: idleMs, commandTimeoutMs: commandMs },
        stressed ? 'under stress: shorter timeouts' : 'stress over',
      );
      for (const c of internals()) if (c._closing !== true) retime(c);
    }
    for (const c of internals()) {
      const t = c.session ? tracked.get(c.session.id) : undefined;
      if (t === undefined || t.evicting || c._closing === true) continue;
      const v = sweepSession(factsOf(c, t), now, commandMs, policy.sessionTimeoutMs);
      if (v === 'ClientDone') {
        // idle at two sweeps in a row: nothing pipelined is left to answer
        if (t.doneIdle === true) c.close();
        else t.doneIdle = true;
        continue;
      }
      t.doneIdle = false;
      if (v === 'CommandTimeout')
        drop(c, v, 'Command line not completed in time, closing connection', '4.4.2');
      else if (v === 'SessionTimeout') drop(c, v, 'Session too long, closing connection', '4.4.2');
    }
  };
  const sweeper = setInterval(sweep, o.sweepIntervalMs ?? 1000);
  sweeper.unref();

  return {
    server,
    get connections() {
      return counter.total;
    },
    get stressed() {
      return stressed;
    },
    get recipientsInFlight() {
      return inFlight.count;
    },
    listen(port, host) {
      return new Promise((resolve, reject) => {
        const onError = (err: Error): void => reject(err);
        server.server.once('error', onError);
        server.listen(port, host, () => {
          server.server.removeListener('error', onError);
          const addr = server.server.address();
          resolve(
            typeof addr === 'object' && addr !== null
              ? { port: addr.port, host: addr.address }
              : { port, host },
          );
        });
      });
    },
    startDraining() {
      draining = true;
      const reply = REPLIES.shuttingDown().reply;
      for (const c of internals()) {
        const inTransaction = c._dataStream || (c.session?.envelope && c.session.envelope.mailFrom !== false);
        if (!inTransaction) c.send(reply.code, reply.text, reply.enhanced);
      }
    },
    updateTls(pair) {
      server.updateSecureContext({ key: pair.key, cert: pair.cert });
    },
    close(graceMs) {
      clearInterval(sweeper);
      (server.options as { closeTimeout?: number }).closeTimeout = Math.max(1, safeDelay(graceMs));
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
