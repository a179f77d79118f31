// A scriptable destination SMTP server on 127.0.0.1 built on smtp-server: stores what it receives, and can be told
// to answer 4xx/5xx at RCPT or DATA, to be slow, to drop a connection mid-transaction, or to go down and come back on
// the same port.
import { freePort } from './net.ts';
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from 'smtp-server';

interface ReceivedMessage {
  mailFrom: string;
  rcptTo: string[];
  /** Raw bytes as received after DATA (dot-unstuffed by smtp-server). */
  raw: Buffer;
  receivedAt: number;
  /** The session ran over TLS (STARTTLS or implicit). */
  secure: boolean;
  /** MAIL FROM's BODY= parameter as smtp-server read it: '8bitmime' with BODY=8BITMIME, else '7bit'. */
  bodyType: string;
  /** The user that authenticated, when AUTH was used. */
  user?: string;
  /** The TLS server name (SNI) the client asked for, when it sent one. */
  servername?: string;
}

export interface PeerOptions {
  /** Offer STARTTLS with this key and certificate (PEM). */
  tls?: { key: Buffer | string; cert: Buffer | string };
  /** Require AUTH (PLAIN/LOGIN) with these credentials before MAIL FROM. */
  auth?: { user: string; pass: string };
  /** With auth and tls: AUTH only after STARTTLS (smtp-server answers 538 before); default: AUTH allowed in plain text. */
  authRequiresTls?: boolean;
  /** With tls: implicit TLS (TLS from the first byte, as on port 465) instead of STARTTLS. */
  implicitTls?: boolean;
  /** Loopback address to listen on; default 127.0.0.1 (another 127.x address is a different destination). */
  host?: string;
  /** Do not offer 8BITMIME in the EHLO reply (an older server). */
  hide8BitMime?: boolean;
  /** Do not offer SMTPUTF8 in the EHLO reply (a server without RFC 6531). */
  hideSmtpUtf8?: boolean;
  /**
   * As Postfix (RFC 6531 §3.4): a non-ASCII address at MAIL FROM or RCPT TO in a transaction whose MAIL FROM did not
   * carry SMTPUTF8 gets `553 5.6.7 Must declare SMTPUTF8 to send unicode address` before the behaviour is asked.
   */
  requireSmtpUtf8?: boolean;
}

export interface PeerBehaviour {
  /**
   * Reply to RCPT TO for a given recipient; undefined = accept. e.g. () => ({ code: 450, message: 'try later' }).
   * accepted: the recipients this transaction has taken so far (a server's limit per transaction).
   */
  rcpt?: (address: string, accepted: number) => { code: number; message: string } | undefined;
  /** Reply after DATA; undefined = accept. */
  data?: (msg: ReceivedMessage) => { code: number; message: string } | undefined;
  /** Delay before answering DATA, in ms. */
  dataDelayMs?: number;
  /** Delay before answering RCPT TO, in ms. */
  rcptDelayMs?: number;
  /** Reply to MAIL FROM; undefined = accept. e.g. () => ({ code: 452, message: '4.3.1 Insufficient system resources' }). */
  mail?: (from: string) => { code: number; message: string } | undefined;
  /** At MAIL FROM of the n-th transaction on a connection (from 1): true drops the connection instead of answering. */
  dropAtMail?: (n: number) => boolean;
  /** After a message's body arrived in full: true drops the connection instead of answering (nothing is stored). */
  dropAfterData?: boolean;
}

/** One RCPT TO the peer answered, with how the session got there. */
interface RcptSeen {
  address: string;
  code: number;
  secure: boolean;
  user?: string;
  /** Present (true) only when the transaction's MAIL FROM carried SMTPUTF8. */
  smtputf8?: true;
}

/** One AUTH command the peer received (whatever its outcome): what a client revealed to it. */
interface AuthSeen {
  username: string;
  password: string;
  /** The session ran over TLS when AUTH arrived. */
  secure: boolean;
}

/** Connection accounting (for the tests that bound what the relay makes a server do). */
interface PeerStats {
  /** Connections accepted so far. */
  connections: number;
  /** Connections open now. */
  open: number;
  /** Most connections open at once. */
  maxOpen: number;
  /** Message bodies that arrived in full, answered or not. */
  bodies: number;
}

export interface SmtpPeer {
  readonly name: string;
  readonly port: number;
  readonly messages: ReceivedMessage[];
  /** Every RCPT TO answered, accepted or not. */
  readonly rcpts: RcptSeen[];
  /** Every AUTH received, accepted or not (with the password, so tests can assert it was never sent). */
  readonly auths: AuthSeen[];
  readonly stats: PeerStats;
  behaviour: PeerBehaviour;
  /** Messages whose envelope includes this recipient. */
  for(recipient: string): ReceivedMessage[];
  /** Close the listener and every connection (an outage). */
  down(): Promise<void>;
  /** Listen again on the same port. */
  up(): Promise<void>;
  close(): Promise<void>;
}

function smtpError(code: number, message: string): Error & { responseCode: number } {
  return Object.assign(new Error(message), { responseCode: code });
}

/** Postfix's reply to a non-ASCII address in a transaction without SMTPUTF8 (PeerOptions.requireSmtpUtf8). */
const UNDECLARED_UTF8 = { code: 553, message: '5.6.7 Must declare SMTPUTF8 to send unicode address' };
// eslint-disable-next-line no-control-regex
const NON_ASCII = /[^\x00-\x7f]/;

export async function startSmtpPeer(
  name: string,
  behaviour: PeerBehaviour = {},
  port?: number,
  options: PeerOptions = {},
): Promise<SmtpPeer> {
  const messages: ReceivedMessage[] = [];
  const rcpts: RcptSeen[] = [];
  const auths: AuthSeen[] = [];
  const stats: PeerStats = { connections: 0, open: 0, maxOpen: 0, bodies: 0 };
  const transactions = new Map<string, number>();
  const listenPort = port ?? (await freePort());
  let server: SMTPServer | undefined;
  const undeclaredUtf8 = (address: string, session: SMTPServerSession) =>
    options.requireSmtpUtf8 === true && session.envelope.smtpUtf8 !== true && NON_ASCII.test(address)
      ? UNDECLARED_UTF8
      : undefined;
  /** Destroys the socket under a session: the client sees the connection drop with no reply. */
  const drop = (session: SMTPServerSession): void => {
    const conns = (server as unknown as { connections?: Set<{ id?: string; _socket?: { destroy(): void } }> })
      .connections;
    conns?.forEach((c) => {
      if (c.id === session.id) c._socket?.destroy();
    });
  };

  const make = (): SMTPServer =>
    new SMTPServer({
      authOptional: options.auth === undefined,
      disabledCommands: [
        ...(options.auth ? [] : ['AUTH']),
        ...(options.tls && options.implicitTls !== true ? [] : ['STARTTLS']),
      ],
      ...(options.tls ? { key: options.tls.key, cert: options.tls.cert } : {}),
      ...(options.tls && options.implicitTls === true ? { secure: true } : {}),
      // AUTH over a plain connection is allowed (the tests run on loopback) unless the peer requires TLS for it.
      allowInsecureAuth: options.authRequiresTls !== true,
      onAuth(auth, session, cb) {
        auths.push({ username: auth.username ?? '', password: auth.password ?? '', secure: session.secure });
        const ok = options.auth && auth.username === options.auth.user && auth.password === options.auth.pass;
        if (ok) cb(null, { user: auth.username });
        else cb(smtpError(535, '5.7.8 authentication failed'));
      },
      logger: false,
      // Record envelopes as sent: smtp-server would otherwise show a lowercase xn-- domain in Unicode (patch).
      decodePunycode: false,
      size: 64 * 1024 * 1024,
      ...(options.hide8BitMime === true ? { hide8BITMIME: true } : {}),
      ...(options.hideSmtpUtf8 === true ? { hideSMTPUTF8: true } : {}),
      onConnect(_session, cb) {
        stats.connections++;
        stats.open++;
        stats.maxOpen = Math.max(stats.maxOpen, stats.open);
        cb();
      },
      onClose(session) {
        stats.open--;
        transactions.delete(session.id);
      },
      onMailFrom(address, session, cb) {
        const n = (transactions.get(session.id) ?? 0) + 1;
        transactions.set(session.id, n);
        if (peer.behaviour.dropAtMail?.(n) === true) return drop(session);
        const r = undeclaredUtf8(address.address, session) ?? peer.behaviour.mail?.(address.address);
        cb(r ? smtpError(r.code, r.message) : null);
      },
      onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, cb: (err?: Error | null) => void) {
        const answer = (): void => {
          const r =
            undeclaredUtf8(address.address, session) ??
            peer.behaviour.rcpt?.(address.address, session.envelope.rcptTo.length);
          rcpts.push({
            address: address.address,
            code: r?.code ?? 250,
            secure: session.secure,
            ...(typeof session.user === 'string' ? { user: session.user } : {}),
            ...(session.envelope.smtpUtf8 === true ? { smtputf8: true as const } : {}),
          });
          cb(r ? smtpError(r.code, r.message) : null);
        };
        const delay = peer.behaviour.rcptDelayMs ?? 0;
        if (delay > 0) setTimeout(answer, delay);
        else answer();
      },
      onData(stream, session, cb) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          stats.bodies++;
          if (peer.behaviour.dropAfterData === true) return drop(session);
          const msg: ReceivedMessage = {
            mailFrom: session.envelope.mailFrom === false ? '' : session.envelope.mailFrom.address,
            rcptTo: session.envelope.rcptTo.map((r) => r.address),
            raw: Buffer.concat(chunks),
            receivedAt: Date.now(),
            secure: session.secure,
            bodyType: (session.envelope as { bodyType?: string }).bodyType ?? '7bit',
            ...(typeof session.user === 'string' ? { user: session.user } : {}),
            ...(typeof (session as { servername?: unknown }).servername === 'string'
              ? { servername: (session as { servername: string }).servername }
              : {}),
          };
          const finish = (): void => {
            const r = peer.behaviour.data?.(msg);
            if (r) return cb(smtpError(r.code, r.message));
            messages.push(msg);
            cb(null);
          };
          const delay = peer.behaviour.dataDelayMs ?? 0;
          if (delay > 0) setTimeout(finish, delay);
          else finish();
        });
      },
    });

  const up = async (): Promise<void> => {
    server = make();
    const s = server;
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(listenPort, options.host ?? '127.0.0.1', () => resolve());
    });
    s.on('error', () => undefined);
  };

  const down = async (): Promise<void> => {
    const s = server;
    server = undefined;
    if (!s) return;
    // smtp-server's close() waits for clients; destroy the sockets so this is a real outage.
    const conns = (s as unknown as { connections?: Set<{ _socket?: { destroy(): void } }> }).connections;
    conns?.forEach((c) => c._socket?.destroy());
    await new Promise<void>((resolve) => s.close(() => resolve()));
  };

  const peer: SmtpPeer = {
    name,
    port: listenPort,
    messages,
    rcpts,
    auths,
    stats,
    behaviour,
    for: (recipient) => messages.filter((m) => m.rcptTo.includes(recipient)),
    down,
    up,
    close: down,
  };
  await up();
  return peer;
}
