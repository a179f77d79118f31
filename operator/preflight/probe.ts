// The preflight probe of one downstream server: TCP connect, greeting, EHLO, and STARTTLS when the server's TLS mode
// asks for it (certificate verified for RequiredVerify); with tls: Implicit the TLS handshake comes first, before
// the greeting (port 465). That part never sends MAIL: it tells whether our relay can reach the server and negotiate
// what its routing asks. When the target carries credentials or an acceptance probe (spec.servers[].probe.address,
// `mailroute preflight --probe`), and that part passed, the acceptance step follows (acceptance.ts): AUTH, and
// MAIL FROM + RCPT TO the probe address (or a probe message), in a session set up the way delivery sets one up.
// The outcome names the local address the connection left from: the address the server must allowlist.
import { isIP, Socket, connect as netConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { lookup as dnsLookup, resolveMx as dnsResolveMx } from 'node:dns/promises';
import {
  checkDestination,
  NOT_PERMITTED,
  PERMIT_ALL,
  permitsEverything,
  withGrant,
  type DestinationPolicy,
  type GrantDestinations,
} from '../../routing/destinations.ts';
import type { TlsMode } from '../../routing/model.ts';
import { assertNever } from '../../routing/model.ts';
import { ehloKeywords, formatSmtpReply, parseReply, type SmtpReply } from './smtp-reply.ts';
import { runAcceptance, type AcceptanceOutcome, type AcceptanceProbe } from './acceptance.ts';

/** none: no TLS in use for this server (mode None, or Opportunistic and not offered); offered: Opportunistic and the
 * server advertises STARTTLS; ok: the STARTTLS handshake succeeded (and the certificate verified for RequiredVerify);
 * failed: the mode requires TLS and it did not work. */
export type TlsReport = 'none' | 'offered' | 'ok' | 'failed';

export interface ProbeTarget {
  host: string;
  port: number;
  mx: boolean;
  tls: TlsMode;
  /** The DomainClaim destinations of the server's domain, combined with the probe's policy (withGrant). */
  destinations?: GrantDestinations;
  /**
   * Credentials for AUTH in the acceptance step (the server's authSecretRef), or why they could not be had (then the
   * acceptance step fails without connecting).
   */
  credentials?: { user: string; pass: string } | { error: string };
  /** true: AUTH may go without TLS (the server's allowPlaintextAuth). */
  allowPlaintextAuth?: boolean;
  /** The acceptance step's MAIL FROM / RCPT TO (and optional probe message). */
  acceptance?: AcceptanceProbe;
}

export interface ProbeOutcome {
  reachable: boolean;
  tls: TlsReport;
  /** What happened, naming the SMTP step that failed: "EHLO: 554 go away", "connect 10.0.0.1:25: ECONNREFUSED". */
  message: string;
  /** The local address the connection left from (present once connected). */
  localAddress?: string;
  /** With credentials: whether AUTH succeeded (or why not). */
  auth?: { ok: boolean; message: string };
  /** With an acceptance probe: the RCPT TO (or probe message) result. */
  acceptance?: AcceptanceOutcome['acceptance'];
}

export type Probe = (target: ProbeTarget) => Promise<ProbeOutcome>;

interface MxRecord {
  exchange: string;
  priority: number;
}

export interface SmtpProbeOptions {
  /** Deadline for the whole conversation. Default 10 s. */
  timeoutMs?: number;
  /** Name sent with EHLO. Default "mailroute-preflight". */
  heloName?: string;
  /** MX lookup for servers with mx: true. Default: node:dns. */
  resolveMx?: (host: string) => Promise<MxRecord[]>;
  /** Extra trusted CA certificates (PEM) for RequiredVerify; default: Node's bundled roots. */
  ca?: string | Buffer | Array<string | Buffer>;
  /**
   * Where the probe may connect (routing/destinations.ts), checked on the resolved address before any connection:
   * a denied destination reports "not permitted" whether its port is open, closed or filtered. Default: anywhere.
   */
  destinations?: DestinationPolicy;
  /** Addresses of a host name for the policy check. Default: node:dns lookup (getaddrinfo, as net.connect does). */
  lookup?: (host: string) => Promise<string[]>;
}

/** Pure: what the TLS mode asks of the probe once EHLO has answered. */
export function tlsPlan(
  mode: TlsMode,
  starttlsOffered: boolean,
): 'report-none' | 'report-offered' | 'handshake' | 'fail-not-offered' | 'report-implicit' {
  switch (mode) {
    case 'None':
      return 'report-none';
    case 'Opportunistic':
      return starttlsOffered ? 'report-offered' : 'report-none';
    case 'Required':
    case 'RequiredVerify':
      return starttlsOffered ? 'handshake' : 'fail-not-offered';
    case 'Implicit':
      // the session is already TLS (handshake before the greeting); STARTTLS does not apply
      return 'report-implicit';
    default:
      return assertNever(mode, 'tls mode');
  }
}

class ProbeError extends Error {
  readonly reachable: boolean;
  constructor(message: string, reachable: boolean) {
    super(message);
    this.reachable = reachable;
  }
}

/** One SMTP conversation over a socket that can be upgraded to TLS. */
class Conversation {
  private socket: Socket;
  private buffer = '';
  private waiter: { resolve: (r: SmtpReply) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;
  private readonly onData = (chunk: Buffer): void => {
    this.buffer += chunk.toString('latin1');
    this.pump();
  };
  private readonly onError = (err: Error): void => this.fail(err);
  private readonly onClose = (): void => this.fail(new Error('connection closed by server'));

  constructor(socket: Socket) {
    this.socket = socket;
    this.attach(socket);
  }

  private attach(s: Socket): void {
    s.on('data', this.onData);
    s.on('error', this.onError);
    s.on('close', this.onClose);
  }

  private detach(s: Socket): void {
    s.off('data', this.onData);
    s.off('error', this.onError);
    s.off('close', this.onClose);
  }

  fail(err: Error): void {
    this.failure ??= err;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(this.failure);
  }

  private pump(): void {
    if (!this.waiter) return;
    const parsed = parseReply(this.buffer);
    switch (parsed.kind) {
      case 'partial':
        if (this.buffer.length > 64 * 1024) this.fail(new Error('reply longer than 64 KiB'));
        return;
      case 'invalid':
        // The content is not echoed: status is readable by whoever can read the MailDomain, and a non-SMTP service's
        // banner is none of their business (the probe must not become a banner grabber for the cluster network).
        this.fail(
          new Error(
            `not an SMTP reply (a line of ${parsed.line.length} bytes that does not start with a 3-digit code)`,
          ),
        );
        return;
      case 'complete': {
        this.buffer = parsed.rest;
        const w = this.waiter;
        this.waiter = undefined;
        w.resolve(parsed.reply);
        return;
      }
      default:
        assertNever(parsed, 'reply parse');
    }
  }

  read(): Promise<SmtpReply> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.pump();
    });
  }

  async command(line: string): Promise<SmtpReply> {
    this.socket.write(`${line}\r\n`);
    return this.read();
  }

  /** Replaces the plain socket by a TLS socket over it; resolves once the handshake is done. */
  async upgrade(options: { host: string; verify: boolean; ca?: SmtpProbeOptions['ca'] }): Promise<TLSSocket> {
    const plain = this.socket;
    this.detach(plain);
    this.buffer = '';
    const servername = isIP(options.host) === 0 ? options.host : undefined;
    const secure = await new Promise<TLSSocket>((resolve, reject) => {
      const s = tlsConnect({
        socket: plain,
        host: options.host,
        ...(servername !== undefined ? { servername } : {}),
        rejectUnauthorized: options.verify,
        ...(options.ca !== undefined ? { ca: options.ca } : {}),
      });
      s.once('secureConnect', () => resolve(s));
      s.once('error', reject);
    });
    this.socket = secure;
    this.attach(secure);
    return secure;
  }

  end(): void {
    this.socket.destroy();
  }
}

function errText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

async function pickEndpoint(
  target: ProbeTarget,
  resolveMx: (host: string) => Promise<MxRecord[]>,
): Promise<{ host: string; via: string }> {
  if (!target.mx) return { host: target.host, via: '' };
  let records: MxRecord[];
  try {
    records = await resolveMx(target.host);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // No MX records: RFC 5321 §5.1 says use the host itself (implicit MX).
    if (code === 'ENODATA' || code === 'ENOTFOUND')
      return { host: target.host, via: ' (no MX, implicit MX)' };
    throw new ProbeError(`MX lookup of ${target.host}: ${errText(err)}`, false);
  }
  const best = [...records].sort((a, b) => a.priority - b.priority)[0];
  if (best === undefined || best.exchange === '' || best.exchange === '.') {
    if (best !== undefined)
      throw new ProbeError(`MX lookup of ${target.host}: null MX (domain accepts no mail)`, false);
    return { host: target.host, via: ' (no MX, implicit MX)' };
  }
  return { host: best.exchange, via: ` (MX ${best.exchange})` };
}

function connectTcp(host: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host, port });
    s.setNoDelay(true);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/**
 * The address to connect to: the host itself when the policy denies nothing (net.connect resolves it); otherwise
 * its first permitted address, resolved here so the address checked is the address connected to (a name, or a
 * numeric form such as 2130706433, is never handed to net.connect). Every address denied: "not permitted", and no
 * connection is made, so an open, a closed and a filtered port read the same.
 */
async function permittedAddress(
  host: string,
  where: string,
  policy: DestinationPolicy,
  lookup: (host: string) => Promise<string[]>,
): Promise<string> {
  if (permitsEverything(policy)) return host;
  let addresses: string[];
  try {
    addresses = isIP(host) !== 0 ? [host] : await lookup(host);
  } catch (err) {
    throw new ProbeError(
      `address lookup of ${host}: ${(err as NodeJS.ErrnoException).code ?? errText(err)}`,
      false,
    );
  }
  const permitted = addresses.find((a) => checkDestination(policy, a).permitted);
  // no port in the text: nothing about the port is known, and two ports of one host read the same
  if (permitted === undefined) throw new ProbeError(`connect ${where}: ${NOT_PERMITTED}`, false);
  return permitted;
}

/** Creates the probe the scheduler uses; options are fixed once. */
export function createSmtpProbe(options: SmtpProbeOptions = {}): Probe {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const heloName = options.heloName ?? 'mailroute-preflight';
  const resolveMx = options.resolveMx ?? ((h: string) => dnsResolveMx(h));
  const policy = options.destinations ?? PERMIT_ALL;
  const lookup =
    options.lookup ??
    (async (h: string) => (await dnsLookup(h, { all: true, order: 'ipv4first' })).map((a) => a.address));

  const reachability = async (
    target: ProbeTarget,
  ): Promise<{ outcome: ProbeOutcome; connectTo?: { host: string; servername?: string } }> => {
    let conv: Conversation | undefined;
    let socket: Socket | undefined;
    let step = 'MX lookup';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      const err = new ProbeError(
        `timed out after ${timeoutMs} ms during ${step}`,
        step !== 'connect' && step !== 'MX lookup',
      );
      conv?.fail(err);
      socket?.destroy(err);
    }, timeoutMs);
    try {
      const endpoint = await pickEndpoint(target, resolveMx);
      step = 'connect';
      const where = `${endpoint.host}:${target.port}${endpoint.via}`;
      const address = await permittedAddress(
        endpoint.host,
        `${endpoint.host}${endpoint.via}`,
        withGrant(policy, target.destinations),
        lookup,
      );
      try {
        socket = await connectTcp(address, target.port);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new ProbeError(`connect ${where}: ${code ?? errText(err)}`, false);
      }
      if (timedOut) throw new ProbeError(`timed out after ${timeoutMs} ms during connect`, false);
      const localAddress = socket.localAddress;
      const connectTo = {
        host: address,
        ...(address !== endpoint.host && isIP(endpoint.host) === 0 ? { servername: endpoint.host } : {}),
      };
      conv = new Conversation(socket);
      let implicit: TLSSocket | undefined;
      if (target.tls === 'Implicit') {
        step = 'TLS handshake';
        try {
          implicit = await conv.upgrade({
            host: endpoint.host,
            verify: false,
            ...(options.ca !== undefined ? { ca: options.ca } : {}),
          });
        } catch (err) {
          if (err instanceof ProbeError || timedOut) throw err;
          return {
            outcome: {
              reachable: true,
              tls: 'failed',
              message: `TLS handshake with ${where} (tls: Implicit): ${errText(err)}`,
              ...(localAddress !== undefined ? { localAddress } : {}),
            },
          };
        }
      }

      step = 'greeting';
      const greeting = await conv.read().catch((err: unknown) => {
        throw err instanceof ProbeError
          ? err
          : new ProbeError(`greeting from ${where}: ${errText(err)}`, false);
      });
      if (greeting.code !== 220)
        throw new ProbeError(`greeting from ${where}: ${formatSmtpReply(greeting)}`, false);

      step = 'EHLO';
      const ehlo = await conv.command(`EHLO ${heloName}`);
      let offered = false;
      if (ehlo.code === 250) {
        offered = ehloKeywords(ehlo).has('STARTTLS');
      } else {
        step = 'HELO';
        const helo = await conv.command(`HELO ${heloName}`);
        if (helo.code !== 250) {
          throw new ProbeError(`EHLO: ${formatSmtpReply(ehlo)}; HELO: ${formatSmtpReply(helo)}`, false);
        }
      }

      const base = `${formatSmtpReply(greeting)}; EHLO ok`;
      const plan = tlsPlan(target.tls, offered);
      let outcome: ProbeOutcome;
      switch (plan) {
        case 'report-none':
          outcome = {
            reachable: true,
            tls: 'none',
            message: `${base}; STARTTLS ${offered ? 'offered, not used (tls: None)' : 'not offered'}`,
          };
          break;
        case 'report-offered':
          outcome = { reachable: true, tls: 'offered', message: `${base}; STARTTLS offered` };
          break;
        case 'report-implicit':
          outcome = {
            reachable: true,
            tls: 'ok',
            message: `${base}; implicit TLS ok (${implicit?.getProtocol() ?? 'TLS'}, certificate not verified)`,
          };
          break;
        case 'fail-not-offered':
          outcome = {
            reachable: true,
            tls: 'failed',
            message: `${base}; STARTTLS: not offered, but tls is ${target.tls}`,
          };
          break;
        case 'handshake': {
          step = 'STARTTLS';
          const start = await conv.command('STARTTLS');
          if (start.code !== 220) {
            outcome = {
              reachable: true,
              tls: 'failed',
              message: `${base}; STARTTLS: ${formatSmtpReply(start)}`,
            };
            break;
          }
          const verify = target.tls === 'RequiredVerify';
          let secure: TLSSocket;
          try {
            secure = await conv.upgrade({
              host: endpoint.host,
              verify,
              ...(options.ca !== undefined ? { ca: options.ca } : {}),
            });
          } catch (err) {
            if (err instanceof ProbeError || timedOut) throw err;
            outcome = {
              reachable: true,
              tls: 'failed',
              message: `${base}; STARTTLS handshake: ${errText(err)}`,
            };
            break;
          }
          step = 'EHLO after STARTTLS';
          const again = await conv.command(`EHLO ${heloName}`);
          if (again.code !== 250) {
            outcome = {
              reachable: true,
              tls: 'failed',
              message: `${base}; EHLO after STARTTLS: ${formatSmtpReply(again)}`,
            };
            break;
          }
          const proto = secure.getProtocol() ?? 'TLS';
          outcome = {
            reachable: true,
            tls: 'ok',
            message: `${base}; STARTTLS ok (${proto}${verify ? ', certificate verified' : ', certificate not verified'})`,
          };
          break;
        }
        default:
          outcome = assertNever(plan, 'tls plan');
      }
      step = 'QUIT';
      socket.write('QUIT\r\n');
      return { outcome: { ...outcome, ...(localAddress !== undefined ? { localAddress } : {}) }, connectTo };
    } catch (err) {
      const local = socket?.localAddress !== undefined ? { localAddress: socket.localAddress } : {};
      if (timedOut) {
        const reachable = step !== 'connect' && step !== 'MX lookup' && step !== 'greeting';
        return {
          outcome: {
            reachable,
            tls: 'none',
            message: `timed out after ${timeoutMs} ms during ${step}`,
            ...local,
          },
        };
      }
      if (err instanceof ProbeError)
        return { outcome: { reachable: err.reachable, tls: 'none', message: err.message, ...local } };
      // A failure after the greeting (connection dropped mid-EHLO, an invalid reply) still means the server answered.
      return { outcome: { reachable: false, tls: 'none', message: `${step}: ${errText(err)}`, ...local } };
    } finally {
      clearTimeout(timer);
      conv?.end();
      socket?.destroy();
    }
  };

  return async (target) => {
    const { outcome, connectTo } = await reachability(target);
    const wanted = target.credentials !== undefined || target.acceptance !== undefined;
    if (!wanted) return outcome;
    const passed = outcome.reachable && outcome.tls !== 'failed' && connectTo !== undefined;
    const skipped = (why: string): ProbeOutcome => ({
      ...outcome,
      ...(target.credentials !== undefined ? { auth: { ok: false, message: why } } : {}),
      ...(target.acceptance !== undefined
        ? { acceptance: { address: target.acceptance.address, result: 'failed' as const, reply: why } }
        : {}),
    });
    if (!passed) return skipped('not tried: the server did not pass the connection and TLS checks');
    const creds = target.credentials;
    if (creds !== undefined && 'error' in creds) return skipped(`credentials: ${creds.error}`);
    const more = await runAcceptance(
      {
        ...connectTo,
        port: target.port,
        tls: target.tls,
        ...(creds !== undefined ? { auth: creds } : {}),
        ...(target.allowPlaintextAuth === true ? { allowPlaintextAuth: true } : {}),
        ...(target.acceptance !== undefined ? { probe: target.acceptance } : {}),
      },
      { hostname: heloName, timeoutMs, ...(options.ca !== undefined ? { ca: options.ca } : {}) },
    );
    return {
      ...outcome,
      ...(more.auth !== undefined ? { auth: more.auth } : {}),
      ...(more.acceptance !== undefined ? { acceptance: more.acceptance } : {}),
    };
  };
}
