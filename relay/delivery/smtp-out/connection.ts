// One SMTP client connection of the relay's delivery path, speaking as nodemailer's client does
// (smtp-connection/index.js, what the pool used before): connect (TLS from the first byte for tls Implicit), TCP_NODELAY
// (the final dot must not wait for Nagle, docs/design.md §7), the greeting (220, else EGREETING: this host will not
// talk, a failure of the host that the caller answers by trying the next one, replies.ts; so are a 421 to EHLO, before
// or after STARTTLS, a 421 to STARTTLS and a 4xx to HELO), EHLO (HELO when it is refused, unless TLS is required),
// STARTTLS per the TLS mode (a refusal is fatal unless the mode is opportunistic, which goes on in plain text without
// AUTH; a failed handshake under opportunistic TLS is ETLS with OpenResult tlsHandshake, for the pool to connect again
// in plain text; when TLS is required, a host that cannot give it, by a refused EHLO or STARTTLS, a failed handshake or
// a certificate that does not verify, is an ETLS failure of that host, SmtpFailure tlsRequired, as Postfix's "TLS is
// required, but ..." site failures: the next host is tried; EHLO again over TLS, whose reply alone says what the
// session offers, RFC 3207 §4.2), AUTH (PLAIN, LOGIN or CRAM-MD5, chosen as nodemailer does), then transactions: with
// PIPELINING, MAIL FROM, every RCPT TO and DATA in one write and the replies matched in order; without it, one command
// at a time; the body as body.ts writes it. A recipient refused at RCPT TO keeps its own refusal whatever ends the
// transaction after it (DATA or the final reply refused, a lost connection): those replies are for the recipients the
// server accepted (TransactionResult). A failure without a reply after the final dot was written is marked
// afterEndOfData (the server may have the message). An envelope may carry ESMTP parameters of the caller's own for MAIL
// FROM and for each recipient's RCPT TO (checked before, by the pool).
//
// Timeouts as nodemailer's: connectionMs bounds connecting; greetingMs the wait for the greeting and a STARTTLS
// handshake, neither past connectionMs from the start; socketMs is the inactivity limit from the connect on, except
// while the reply to the final dot is awaited: finalReplyMs then, when longer (RFC 5321 §4.5.3.2.6: 10 minutes).
// A 421 reply ends the connection wherever it comes (RFC 5321 §3.8); so do a server that closes, a socket error, a
// timeout and a reply nobody asked for. Every operation (open, send, reset) reports exactly once, whatever happens.
//
// Exports:
//   ConnectionSettings, Envelope, OpenResult, SendOutcome, ConnectionEvents.
//   SmtpConnection: open(done), send(envelope, body, done), reset(done), idle(ms), quit(), close(), alive, messages.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, TLSSocket, type ConnectionOptions } from 'node:tls';
import type { SmtpTimeouts } from '../../../lib/smtp-client.ts';
import type { MessageBody } from '../../spool/types.ts';
import {
  authPlainLine,
  base64,
  cramMd5Answer,
  isAsciiAddress,
  mailFromLine,
  needsSmtpUtf8,
  rcptLine,
  smtpUtf8Required,
} from './commands.ts';
import { writeBody } from './body.ts';
import {
  authMethod,
  HELO_EXTENSIONS,
  offersStartTls,
  parseEhlo,
  withoutAuth,
  type AuthMethod,
  type Extensions,
} from './ehlo.ts';
import { decodeReply, isClosing, ReplyParser } from './reply.ts';
import { smtpFailure, type Rejection, type SmtpFailure, type TransactionResult } from './replies.ts';

export interface ConnectionSettings {
  host: string;
  port: number;
  /** Our name in EHLO and HELO. */
  name: string;
  timeouts: SmtpTimeouts;
  /** TLS from the first byte (tls Implicit). */
  implicitTls: boolean;
  /** STARTTLS is never sent (tls None). */
  ignoreTls: boolean;
  /** STARTTLS is sent even when not offered, and nothing goes on without it. */
  requireTls: boolean;
  /**
   * A refused STARTTLS leaves the session in plain text, without AUTH; a failed handshake is reported as such
   * (OpenResult tlsHandshake) for the caller to connect again without STARTTLS.
   */
  opportunisticTls: boolean;
  /** For tls.connect: the certificate check and the SNI name. */
  tls: ConnectionOptions;
  auth?: { user: string; pass: string };
}

/** The envelope as it goes on the wire ('' for the null sender). */
export interface Envelope {
  from: string;
  to: readonly string[];
  /** Announced as SIZE= when the server offers SIZE; over the server's limit the message is not sent. */
  size?: number;
  /**
   * The message was received with BODY=8BITMIME: announced again when the server offers 8BITMIME (RFC 6152). A server
   * that does not offer it gets the body as it is, without the parameter (no conversion to 7 bit: it would break DKIM).
   */
  body8bit?: boolean;
  /** The caller's ESMTP parameters for MAIL FROM, after the client's own (commands.ts esmtpParamsProblem passed). */
  mailParams?: readonly string[];
  /** The caller's ESMTP parameters for each RCPT TO: rcptParams[i] for to[i] (checked as mailParams). */
  rcptParams?: readonly (readonly string[] | undefined)[];
}

export type OpenResult =
  | { ok: true }
  /**
   * beforeGreeting: the server closed the connection without a word (nodemailer's pool tries once more).
   * tlsHandshake: under opportunistic TLS, the STARTTLS handshake failed after the server's 220 (an error, a close or
   * the time running out): the failure is ETLS, and the caller may connect again without STARTTLS (pool.ts).
   */
  | { ok: false; failure: SmtpFailure; beforeGreeting: boolean; tlsHandshake: boolean };

export interface SendOutcome {
  result: TransactionResult;
  /** Bytes of the message itself (after DATA's 354) were written: it must not be sent again by the client. */
  bodyStarted: boolean;
}

export interface ConnectionEvents {
  /** A connection with nothing in flight ended (closed by the server, a timeout, a 421 or stray reply). */
  closed(conn: SmtpConnection): void;
  /** A connection was idle for the time given to idle(). */
  idleExpired(conn: SmtpConnection): void;
}

type Handler = (reply: string) => void;
/**
 * closing: a 421 reply; beforeGreeting: the server closed before it greeted; tlsHandshake: the STARTTLS handshake
 * failed under opportunistic TLS.
 */
type BreakKind = 'broken' | 'closing' | 'beforeGreeting' | 'tlsHandshake';

/** Idle time before TCP keepalive probes start (nodemailer's: keeps NAT mappings of idle connections). */
const KEEPALIVE_DELAY_MS = 30_000;
/** How long the server has to close its side after we closed ours. */
const CLOSE_TIMEOUT_MS = 5_000;
const ignore = (): void => undefined;
const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));

export class SmtpConnection {
  /** Transactions started on it (one that sent before may have been dropped by the server since). */
  messages = 0;
  private readonly s: ConnectionSettings;
  private readonly events: ConnectionEvents;
  private socket: Socket | undefined;
  /** Every socket of the connection (after STARTTLS the plain one under the TLS one too): torn down together. */
  private readonly sockets: Socket[] = [];
  private readonly parser = new ReplyParser();
  /** What to do with each reply expected, in the order the commands were written. */
  private handlers: Handler[] = [];
  private phaseTimer: NodeJS.Timeout | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  /** When the final dot of the transaction in flight was written (performance.now()); undefined otherwise. */
  private finalSince: number | undefined;
  /** The socket's inactivity limit was raised towards finalReplyMs, to be set back when the transaction ends. */
  private finalExtended = false;
  private isIdle = false;
  /** The set-up (greeting, STARTTLS handshake) must end before this (connectionMs after it started). */
  private deadline = 0;
  private connected = false;
  private greeted = false;
  private secure = false;
  private upgrading = false;
  private closed = false;
  /** A message's bytes were written and its reply is not in: a break now must not let anything more go out. */
  private inBody = false;
  private plaintextEhlo = '';
  private ext: Extensions = HELO_EXTENSIONS;
  /** The operation in progress (open, send, reset): told once when the connection breaks under it. */
  private onBreak: ((f: SmtpFailure, kind: BreakKind) => void) | undefined;
  private opened: ((r: OpenResult) => void) | undefined;

  constructor(settings: ConnectionSettings, events: ConnectionEvents) {
    this.s = settings;
    this.events = events;
  }

  /** Not closed: it can be given another transaction (when idle). */
  get alive(): boolean {
    return !this.closed;
  }

  // ---------------- set-up ----------------

  /** Connects and sets the session up (greeting, EHLO, STARTTLS, AUTH). done is called once, never synchronously. */
  open(done: (r: OpenResult) => void): void {
    const t = this.s.timeouts;
    this.deadline = performance.now() + t.connectionMs; // monotonic: a wall clock step must not time it out
    this.opened = done;
    this.onBreak = (failure, kind) => {
      this.opened = undefined;
      done({
        ok: false,
        failure,
        beforeGreeting: kind === 'beforeGreeting',
        tlsHandshake: kind === 'tlsHandshake',
      });
    };
    this.startPhase(t.connectionMs, 'Connection timeout');
    const where = { host: this.s.host, port: this.s.port };
    let socket: Socket;
    try {
      socket = this.s.implicitTls
        ? tlsConnect({ ...where, ...this.s.tls }, this.onConnect)
        : netConnect(where, this.onConnect);
    } catch (err) {
      setImmediate(() => this.fail(smtpFailure('ECONNECTION', messageOf(err))));
      return;
    }
    this.use(socket);
  }

  private use(socket: Socket): void {
    this.socket = socket;
    this.sockets.push(socket);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
    socket.on('timeout', this.onTimeout);
  }

  private readonly onConnect = (): void => {
    const socket = this.socket;
    if (this.closed || socket === undefined) return;
    this.clearPhase();
    this.connected = true;
    this.secure = this.s.implicitTls;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
    socket.setTimeout(this.s.timeouts.socketMs);
    socket.on('data', this.onData);
    this.startPhase(this.setupTime(), 'Greeting never received');
    this.expect(this.onGreeting);
  };

  private readonly onGreeting = (reply: string): void => {
    this.clearPhase();
    this.greeted = true;
    if (!reply.startsWith('220')) {
      // This host will not talk (a 554 or 421 banner under load, "too many connections"): a failure of this host,
      // not a refusal of the message, so the next address or MX host is tried (Postfix's smtp_skip_5xx_greeting).
      const why = /^[45]/.test(reply) ? 'Session refused at the greeting' : 'Invalid greeting';
      this.fail(smtpFailure('EGREETING', why, reply));
      return;
    }
    this.ehlo();
  };

  private ehlo(): void {
    this.expect(this.onEhlo);
    this.write(`EHLO ${this.s.name}`);
  }

  private readonly onEhlo = (reply: string): void => {
    if (reply.startsWith('421')) {
      // "closing" at EHLO (a server under load, a rate limit): like a 421 banner, this host will not talk now and
      // refused no message, so the next address or MX host is tried (Postfix moves on the same way). As an smtp 421
      // it counted as the destination's answer: the leg waited for its next retry while another MX host was free.
      this.fail(smtpFailure('EGREETING', 'Session refused at EHLO', reply));
      return;
    }
    if (reply[0] !== '2') {
      if (this.s.requireTls && !this.secure) {
        // HELO has no STARTTLS: this host cannot give the TLS required (Postfix falls back to HELO and then finds
        // STARTTLS not offered). It was the server's reply, and a 5xx bounced the mail while another MX host was free.
        this.failTlsRequired(`was not offered by host ${this.peer()} (EHLO refused)`, reply);
        return;
      }
      if (this.s.requireTls) {
        const why = `EHLO failed but HELO does not support required STARTTLS. response=${reply}`;
        this.fail(smtpFailure('ECONNECTION', why, reply));
        return;
      }
      this.expect(this.onHelo);
      this.write(`HELO ${this.s.name}`);
      return;
    }
    if (!this.secure && !this.s.ignoreTls && (offersStartTls(reply) || this.s.requireTls)) {
      this.plaintextEhlo = reply;
      this.expect(this.onStartTls);
      this.write('STARTTLS');
      return;
    }
    this.ext = parseEhlo(reply);
    this.authenticate();
  };

  private readonly onHelo = (reply: string): void => {
    if (reply[0] === '4') {
      // EHLO refused, then HELO refused for now: as a 421 at EHLO, the host will not talk now (next host tried)
      this.fail(smtpFailure('EGREETING', 'Session refused at HELO', reply));
      return;
    }
    if (reply[0] !== '2') {
      this.fail(smtpFailure('EPROTOCOL', `Invalid HELO. response=${reply}`, reply));
      return;
    }
    this.ext = HELO_EXTENSIONS;
    this.authenticate();
  };

  private readonly onStartTls = (reply: string): void => {
    if (reply[0] === '2') {
      this.upgrade();
      return;
    }
    if (reply.startsWith('421')) {
      // "closing" instead of "220 ready to start TLS": as a 421 at EHLO, this host will not talk now and refused no
      // message, whatever the TLS mode (next address or MX host tried). It was the destination's answer (an smtp 421
      // under opportunistic TLS, a local ETLS under required TLS): the leg waited for its retry on the same host.
      this.fail(smtpFailure('EGREETING', 'Session refused at STARTTLS', reply));
      return;
    }
    if (this.s.opportunisticTls) {
      // plain text goes on with what the server announced for it, but credentials are not sent over it
      this.ext = withoutAuth(parseEhlo(this.plaintextEhlo));
      this.authenticate();
      return;
    }
    // TLS is required (sent even when not offered, as nodemailer does) and this host will not give it: a failure of
    // this host, the next one is tried (Postfix: "TLS is required, but ..."). It was a local ETLS: deferred on the same
    // host while another MX host was free, until the queue lifetime ran out.
    const why = offersStartTls(this.plaintextEhlo)
      ? `host ${this.peer()} refused to start TLS`
      : `was not offered by host ${this.peer()}`;
    this.failTlsRequired(why, reply);
  };

  private upgrade(): void {
    const plain = this.socket;
    if (plain === undefined) return;
    // RFC 3207 §4.2: nothing received before the handshake is kept (STARTTLS response injection)
    this.parser.reset();
    plain.removeListener('data', this.onData);
    plain.setTimeout(0);
    this.upgrading = true;
    this.startPhase(this.setupTime(), 'TLS handshake timed out');
    let secure: Socket;
    try {
      secure = tlsConnect({ socket: plain, host: this.s.host, ...this.s.tls }, () => {
        if (this.closed) return;
        this.clearPhase();
        this.upgrading = false;
        this.secure = true;
        secure.on('data', this.onData);
        this.ehlo();
      });
    } catch (err) {
      this.fail(smtpFailure('ETLS', `Error initiating TLS - ${messageOf(err)}`));
      return;
    }
    this.use(secure);
    secure.setTimeout(this.s.timeouts.socketMs);
  }

  private authenticate(): void {
    const auth = this.s.auth;
    if (auth === undefined || (auth.user === '' && auth.pass === '') || !this.ext.auth) {
      this.ready();
      return;
    }
    const method = authMethod(this.ext);
    if (auth.user === '' || auth.pass === '') {
      this.fail(smtpFailure('EAUTH', `Missing credentials for "${method}"`));
      return;
    }
    const { user, pass } = auth;
    switch (method) {
      case 'PLAIN':
        this.expect((r) => this.authDone(r, method));
        this.write(authPlainLine(user, pass));
        return;
      case 'LOGIN':
        this.expect((r) => {
          if (!/^334[ -]/.test(r)) {
            this.fail(smtpFailure('EAUTH', 'Invalid login sequence while waiting for "334 VXNlcm5hbWU6"', r));
            return;
          }
          this.expect((r2) => {
            if (!/^334[ -]/.test(r2)) {
              this.fail(
                smtpFailure('EAUTH', 'Invalid login sequence while waiting for "334 UGFzc3dvcmQ6"', r2),
              );
              return;
            }
            this.expect((r3) => this.authDone(r3, method));
            this.write(base64(pass));
          });
          this.write(base64(user));
        });
        this.write('AUTH LOGIN');
        return;
      case 'CRAM-MD5':
        this.expect((r) => {
          const answer = cramMd5Answer(r, user, pass);
          if (answer === undefined) {
            const why = 'Invalid login sequence while waiting for server challenge string';
            this.fail(smtpFailure('EAUTH', why, r));
            return;
          }
          this.expect((r2) => {
            if (!/^235\s+/.test(r2)) {
              this.fail(smtpFailure('EAUTH', 'Invalid login sequence while waiting for "235"', r2));
              return;
            }
            this.ready();
          });
          this.write(answer);
        });
        this.write('AUTH CRAM-MD5');
        return;
      default: {
        const never: never = method;
        throw new Error(`unexpected AUTH method ${String(never)}`);
      }
    }
  }

  /** The reply that ends PLAIN or LOGIN: a 334 is answered with an empty line, as nodemailer does. */
  private authDone(reply: string, method: AuthMethod): void {
    if (reply.startsWith('334')) {
      this.expect((r) => this.authDone(r, method));
      this.write('');
      return;
    }
    if (reply[0] !== '2') {
      this.fail(smtpFailure('EAUTH', 'Invalid login', reply));
      return;
    }
    this.ready();
  }

  private ready(): void {
    const done = this.opened;
    this.opened = undefined;
    this.onBreak = undefined;
    done?.({ ok: true });
  }

  // ---------------- transactions ----------------

  /**
   * One transaction: MAIL FROM, RCPT TO each recipient, DATA, the body. done is called exactly once, never
   * synchronously; the connection stays usable unless the outcome closed it (see alive).
   */
  send(env: Envelope, body: MessageBody, done: (o: SendOutcome) => void): void {
    this.messages++;
    this.isIdle = false;
    const pipelined = this.ext.pipelining;
    const accepted: string[] = [];
    const rejected: Rejection[] = [];
    let mailError: SmtpFailure | undefined;
    let settled = false;
    let bodyStarted = false;
    let bodyEnded = false;
    let stopBody: (() => void) | undefined;
    /** Recipients whose RCPT TO was written (one at a time without PIPELINING). */
    let next = 0;

    const finish = (result: TransactionResult): void => {
      if (settled) return;
      settled = true;
      this.inBody = false;
      this.finalSince = undefined;
      if (this.finalExtended) {
        this.finalExtended = false;
        this.socket?.setTimeout(this.s.timeouts.socketMs);
      }
      if (this.onBreak === onBreak) this.onBreak = undefined;
      stopBody?.();
      done({ result, bodyStarted });
    };
    // Whatever ends the transaction, a recipient refused at RCPT TO keeps its own refusal (Postfix applies the DATA and
    // end-of-data replies, or a lost connection, to the recipients the server accepted only): a 450 greylisting is
    // not bounced by the 552 of another recipient's full mailbox, nor a 550 unknown user deferred by a 451 at the end.
    // A refused MAIL FROM is everyone's reply (the RCPT TO replies after it, 503s, say nothing of the recipients).
    // After the final dot a failure without a reply (lost connection, timeout) leaves the message possibly taken by the
    // server: marked, so that no other host is given it in the same attempt (replies.ts failureReply, attempt.ts).
    const failWith = (failure: SmtpFailure): void =>
      finish({
        ok: false,
        failure: bodyEnded ? { ...failure, afterEndOfData: true } : failure,
        rejected: mailError === undefined ? [...rejected] : [],
      });
    // A 421 while the envelope was refused reports the refusal (nodemailer's _onServerClosing: the mail error wins).
    const onBreak = (f: SmtpFailure, kind: BreakKind): void =>
      failWith(kind === 'closing' && mailError !== undefined ? mailError : f);
    this.onBreak = onBreak;

    if (this.closed) {
      // never given a closed connection; should it happen, the send is answered rather than left waiting
      queueMicrotask(() => failWith(smtpFailure('ECONNECTION', 'Connection closed unexpectedly')));
      return;
    }
    if (this.ext.maxSize > 0 && env.size !== undefined && env.size > this.ext.maxSize) {
      // Permanent, as Postfix's smtp client makes it: the server said in advance it takes nothing this large, so
      // retrying cannot help (and a 'network' failure would also suspend the destination for every other message).
      const f = smtpFailure(
        'EMESSAGE',
        'Message size larger than allowed',
        `552 5.3.4 message size ${env.size} exceeds size limit ${this.ext.maxSize} of server ${this.s.host}`,
      );
      queueMicrotask(() => failWith(f));
      return;
    }

    // Without SMTPUTF8 at the server, a non-ASCII address is not sent (commands.ts smtpUtf8Required): a non-ASCII
    // sender fails the whole message, a non-ASCII recipient only itself, refused as if by its RCPT TO.
    let to = env.to;
    let rcptParams = env.rcptParams;
    if (!this.ext.smtputf8 && needsSmtpUtf8(env.from, env.to)) {
      if (!isAsciiAddress(env.from)) {
        const f = smtpFailure('EENVELOPE', 'Mail command failed', smtpUtf8Required(env.from, this.s.host));
        queueMicrotask(() => failWith(f));
        return;
      }
      const keep: number[] = [];
      env.to.forEach((r, i) => {
        if (isAsciiAddress(r)) keep.push(i);
        else
          rejected.push({
            recipient: r,
            failure: smtpFailure('EENVELOPE', 'Recipient command failed', smtpUtf8Required(r, this.s.host)),
          });
      });
      if (keep.length === 0) {
        const f = smtpFailure(
          'EENVELOPE',
          "Can't send mail - all recipients were rejected",
          smtpUtf8Required(env.to[0] ?? '', this.s.host),
        );
        queueMicrotask(() => failWith(f));
        return;
      }
      const params = env.rcptParams;
      to = keep.map((i) => env.to[i] ?? '');
      rcptParams = params === undefined ? undefined : keep.map((i) => params[i]);
    }

    /** With every MAIL FROM and RCPT TO reply in: the failure that ends the transaction before the body, if any. */
    const envelopeError = (reply: string): SmtpFailure | undefined => {
      if (mailError !== undefined) return mailError;
      if (accepted.length > 0) return undefined;
      // a temporary refusal when there is one: the last reply would fail the message although some were deferred
      const deferred = rejected.find(
        (r) => (r.failure.responseCode ?? 0) > 0 && (r.failure.responseCode ?? 0) < 500,
      );
      const last = rejected.at(-1);
      const shown = deferred?.failure.response ?? (pipelined && last ? last.failure.response : reply);
      return smtpFailure('EENVELOPE', "Can't send mail - all recipients were rejected", shown);
    };

    const advance = (reply: string): void => {
      if (pipelined) return;
      if (mailError !== undefined) {
        failWith(mailError);
        return;
      }
      const recipient = to[next];
      if (recipient !== undefined) {
        const extra = rcptParams?.[next];
        next++;
        this.expect(onRcpt(recipient));
        this.write(rcptLine(recipient, extra));
        return;
      }
      const err = envelopeError(reply);
      if (err !== undefined) {
        failWith(err);
        return;
      }
      this.expect(onDataReply);
      this.write('DATA');
    };

    const onMail = (reply: string): void => {
      if (reply[0] !== '2') mailError = smtpFailure('EENVELOPE', 'Mail command failed', reply);
      advance(reply);
    };

    const onRcpt =
      (to: string) =>
      (reply: string): void => {
        if (reply[0] === '2') accepted.push(to);
        else
          rejected.push({
            recipient: to,
            failure: smtpFailure('EENVELOPE', 'Recipient command failed', reply),
          });
        advance(reply);
      };

    const onDataReply = (reply: string): void => {
      if (pipelined) {
        const err = envelopeError(reply);
        if (err !== undefined) {
          if (reply[0] !== '3') {
            failWith(err);
            return;
          }
          if (mailError !== undefined) {
            // DATA taken without a sender: a server that cannot be trusted with an empty message either; drop it
            this.teardown(true);
            failWith(err);
            return;
          }
          // DATA taken with nobody to deliver to: end the empty message, the session stays usable
          this.expect(() => failWith(err));
          this.write('.');
          return;
        }
      }
      // 354, or 250 from servers that say so (nodemailer: 2xx or 3xx)
      if (reply[0] !== '2' && reply[0] !== '3') {
        failWith(smtpFailure('EENVELOPE', 'Data command failed', reply));
        return;
      }
      sendBody();
    };

    const sendBody = (): void => {
      const socket = this.socket;
      if (this.closed || socket === undefined) return;
      this.expect(onFinal);
      bodyStarted = true;
      this.inBody = true;
      stopBody = writeBody(socket, body, (failure) => {
        if (failure === undefined) {
          bodyEnded = true;
          if (!settled) this.finalSince = performance.now();
          return;
        }
        // never the final dot after a body that could not be read in full
        this.teardown(true);
        failWith(failure);
      });
    };

    const onFinal = (reply: string): void => {
      if (!bodyEnded) {
        // an answer before the end of the message: what the server holds is unknown, the connection goes (at once:
        // the rest of the body is not sent)
        this.teardown(true);
        if (reply[0] === '2') {
          failWith(smtpFailure('EPROTOCOL', `Server replied before the end of the message: ${reply}`));
          return;
        }
        failWith(smtpFailure('EMESSAGE', 'Message failed', reply));
        return;
      }
      if (reply[0] !== '2') {
        failWith(smtpFailure('EMESSAGE', 'Message failed', reply));
        return;
      }
      finish({ ok: true, response: reply, accepted, rejected });
    };

    const mail = mailFromLine(
      env.from,
      {
        smtputf8: this.ext.smtputf8 && needsSmtpUtf8(env.from, to),
        body8bit: this.ext.eightBitMime && env.body8bit === true,
        ...(this.ext.size && env.size !== undefined ? { size: env.size } : {}),
      },
      env.mailParams,
    );
    this.expect(onMail);
    if (!pipelined) {
      this.write(mail);
      return;
    }
    // RFC 2920: the envelope and DATA in one write, the replies matched in order
    let batch = `${mail}\r\n`;
    for (let i = 0; i < to.length; i++) {
      const recipient = to[i];
      if (recipient === undefined) continue;
      this.expect(onRcpt(recipient));
      batch += `${rcptLine(recipient, rcptParams?.[i])}\r\n`;
    }
    this.expect(onDataReply);
    this.writeRaw(`${batch}DATA\r\n`);
  }

  /** RSET after a refused transaction (as nodemailer's pool does): done(true) when the session is usable again. */
  reset(done: (ok: boolean) => void): void {
    this.isIdle = false;
    let settled = false;
    const end = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      if (this.onBreak === onBreak) this.onBreak = undefined;
      done(ok);
    };
    const onBreak = (): void => end(false);
    this.onBreak = onBreak;
    if (this.closed) {
      queueMicrotask(() => end(false));
      return;
    }
    this.expect((reply) => {
      if (reply[0] !== '2') {
        this.teardown();
        end(false);
        return;
      }
      end(true);
    });
    this.write('RSET');
  }

  /** Nothing in flight: after ms of that, events.idleExpired (unless it was given work meanwhile). */
  idle(ms: number): void {
    this.isIdle = true;
    if (this.idleTimer !== undefined) {
      this.idleTimer.refresh();
      return;
    }
    this.idleTimer = setTimeout(() => {
      if (this.isIdle && !this.closed) this.events.idleExpired(this);
    }, ms);
    this.idleTimer.unref();
  }

  /** Says goodbye (QUIT) and closes. */
  quit(): void {
    if (this.closed) return;
    this.write('QUIT');
    this.teardown();
  }

  /** Closes without a word (as nodemailer's close(): our side ends, the server's is given CLOSE_TIMEOUT_MS). */
  close(): void {
    this.teardown();
  }

  // ---------------- I/O ----------------

  private expect(h: Handler): void {
    this.handlers.push(h);
  }

  private write(line: string): void {
    this.writeRaw(`${line}\r\n`);
  }

  private writeRaw(text: string): void {
    const socket = this.socket;
    if (this.closed || socket === undefined) return;
    if (socket.destroyed) {
      // gone under us before its 'close' arrived: report it like a close, never synchronously
      queueMicrotask(() => this.fail(smtpFailure('ECONNECTION', 'Connection closed unexpectedly')));
      return;
    }
    socket.write(text);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.closed) return;
    const replies = this.parser.push(chunk);
    if (replies === undefined) {
      this.parser.reset();
      this.fail(smtpFailure('EPROTOCOL', 'Server response exceeds maximum allowed size'));
      return;
    }
    for (const reply of replies) {
      // after STARTTLS's 220 whatever else came in plain text is dropped with the parser's buffer
      if (this.closed || this.upgrading) return;
      this.dispatch(reply);
    }
  };

  private dispatch(reply: string): void {
    const handler = this.handlers.shift();
    const closing = isClosing(reply);
    if (handler !== undefined) {
      // the command gets its reply first (its own error), then a 421 ends the connection
      handler(reply);
      if (closing && !this.closed) {
        this.fail(smtpFailure('ECONNECTION', 'Server closed the connection', reply), 'closing');
      }
      return;
    }
    // Nothing was waiting: a 421 ends an idle session; anything else is a protocol error.
    if (closing) this.fail(smtpFailure('ECONNECTION', 'Server closed the connection', reply), 'closing');
    else this.fail(smtpFailure('EPROTOCOL', 'Unexpected Response', reply));
  }

  private readonly onError = (err: Error): void => {
    if (this.upgrading && this.s.opportunisticTls) {
      this.failHandshake(err.message);
      return;
    }
    if (this.upgrading) {
      // TLS is required: the handshake failed, or (RequiredVerify) the certificate did not verify for the host name
      // (node sets authorizationError before it ends the handshake with that error)
      const s = this.socket;
      const unverified =
        s instanceof TLSSocket && s.authorizationError !== undefined && s.authorizationError !== null;
      this.failTlsRequired(
        unverified
          ? `the certificate of host ${this.peer()} did not verify: ${err.message.trim()}`
          : `the TLS handshake with host ${this.peer()} failed: ${err.message.trim()}`,
        undefined,
        (err as NodeJS.ErrnoException).code,
      );
      return;
    }
    const f = smtpFailure('ESOCKET', err.message);
    const errno = (err as NodeJS.ErrnoException).code;
    if (errno !== undefined) f.errno = errno;
    this.fail(f);
  };

  private readonly onTimeout = (): void => {
    // the reply to the final dot gets finalReplyMs from the dot (the server may be delivering meanwhile), not the
    // inactivity limit: armed only when that limit ran out first, so a transaction pays nothing for it
    const finalMs = this.s.timeouts.finalReplyMs ?? 0;
    if (this.finalSince !== undefined && finalMs > this.s.timeouts.socketMs) {
      const left = finalMs - (performance.now() - this.finalSince);
      if (left > 0 && this.socket !== undefined) {
        this.finalExtended = true;
        this.socket.setTimeout(Math.ceil(left));
        return;
      }
    }
    this.fail(smtpFailure('ETIMEDOUT', 'Timeout'));
  };

  private readonly onClose = (): void => {
    if (this.closed) return;
    // an unterminated last line counts as the server's reply only when it reads like a whole failure reply
    const rest = decodeReply(this.parser.remainder().trim());
    const response = /^[45]\d{2}[ -]/.test(rest) ? rest : undefined;
    if (this.upgrading) {
      if (this.s.opportunisticTls) this.failHandshake('Connection closed unexpectedly');
      else
        this.failTlsRequired(
          `the TLS handshake with host ${this.peer()} failed: Connection closed`,
          response,
        );
      return;
    }
    if (this.connected && !this.greeted) {
      if (response === undefined) {
        this.fail(smtpFailure('ECONNECTION', 'Connection closed unexpectedly'), 'beforeGreeting');
        return;
      }
      // a banner refusal written without its line end before the close: refused at the greeting all the same
      this.fail(smtpFailure('EGREETING', 'Session refused at the greeting', response));
      return;
    }
    this.fail(smtpFailure('ECONNECTION', 'Connection closed unexpectedly', response));
  };

  /**
   * The STARTTLS handshake failed under opportunistic TLS (a server that speaks only TLS 1.0, broken ciphers, one that
   * never finishes it): ETLS, kind tlsHandshake, so that the pool connects again in plain text, as opportunistic TLS
   * promises (Postfix's "may" level does the same). Under Required the same breaks stay socket failures and timeouts.
   */
  private failHandshake(why: string): void {
    this.fail(smtpFailure('ETLS', `TLS handshake failed: ${why}`), 'tlsHandshake');
  }

  /**
   * TLS is required (Required, RequiredVerify, credentials without allowPlaintextAuth) and this host cannot give it: it
   * does not offer STARTTLS, refuses it (a 421 is EGREETING, onStartTls), fails the handshake, or its certificate does
   * not verify. ETLS marked tlsRequired: a failure of this host (replies.ts failureReply), so the next address or MX
   * host is tried at once, as Postfix's smtp_site_fail "TLS is required, but ...". Never plain text.
   */
  private failTlsRequired(why: string, reply?: string, errno?: string): void {
    const f = smtpFailure('ETLS', `TLS is required, but ${why}`, reply);
    f.tlsRequired = true;
    if (errno !== undefined) f.errno = errno;
    this.fail(f);
  }

  /** The host as Postfix names it in its replies: name[address], or the address (or name) alone. */
  private peer(): string {
    const name = this.s.tls.servername;
    return name !== undefined && name !== this.s.host ? `${name}[${this.s.host}]` : this.s.host;
  }

  /** The connection broke: closed, and the operation in flight told (or, with none, the pool). Once. */
  private fail(f: SmtpFailure, kind: BreakKind = 'broken'): void {
    if (this.closed) return;
    // mid-message, whatever is still buffered for the server must not go out: reset at once
    this.teardown(this.inBody);
    const onBreak = this.onBreak;
    this.onBreak = undefined;
    if (onBreak !== undefined) onBreak(f, kind);
    else this.events.closed(this);
  }

  /**
   * Closes the connection; tells no one. Our side ends after what was written (the server gets CLOSE_TIMEOUT_MS to
   * close its own), or with hard, or before the session was set up, at once.
   */
  private teardown(hard = false): void {
    if (this.closed) return;
    this.closed = true;
    this.isIdle = false;
    this.clearPhase();
    clearTimeout(this.idleTimer);
    this.handlers = [];
    for (const s of this.sockets) {
      // errors of a socket being torn down are of no interest (e.g. a TLS alert after our end)
      s.on('error', ignore);
      s.removeListener('data', this.onData);
      s.setTimeout(0);
    }
    const socket = this.socket;
    if (socket === undefined || socket.destroyed) {
      for (const s of this.sockets) s.destroy();
      return;
    }
    if (hard || !this.connected || this.upgrading) {
      for (const s of this.sockets) s.destroy();
      return;
    }
    socket.end();
    // a server that never closes its side must not keep the socket (and the process) around
    const timer = setTimeout(() => {
      for (const s of this.sockets) s.destroy();
    }, CLOSE_TIMEOUT_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  }

  private setupTime(): number {
    return Math.min(this.s.timeouts.greetingMs, Math.max(this.deadline - performance.now(), 1));
  }

  private startPhase(ms: number, message: string): void {
    this.clearPhase();
    this.phaseTimer = setTimeout(() => {
      this.phaseTimer = undefined;
      if (this.upgrading && this.s.opportunisticTls) this.failHandshake(message);
      else this.fail(smtpFailure('ETIMEDOUT', message));
    }, ms);
  }

  private clearPhase(): void {
    if (this.phaseTimer !== undefined) clearTimeout(this.phaseTimer);
    this.phaseTimer = undefined;
  }
}
