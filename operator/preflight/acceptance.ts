// The acceptance step of the preflight: after the reachability probe (probe.ts) has passed, a second SMTP session to
// the same address, set up exactly as the relay's delivery sets one up: smtpClientOptions() of
// lib/smtp-client.ts (TLS mode, certificate check for RequiredVerify, AUTH only over TLS unless
// allowPlaintextAuth) and nodemailer's SMTPConnection. Then AUTH when credentials are given, and with a probe address
// `MAIL FROM:<sender>` and `RCPT TO:<address>` followed by RSET (no message), or, with `send`, a whole probe message
// carrying the marker header `X-Mailroute-Probe: <id>`. A server that has not allowlisted the relay answers 5xx here,
// long before real mail depends on it.
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import {
  plaintextAuthRefusal,
  smtpClientOptions,
  smtpCommand,
  type SmtpClientTarget,
} from '../../lib/smtp-client.ts';

/** The header a probe message carries; its value is the probe id. */
export const PROBE_HEADER = 'X-Mailroute-Probe';

/** accepted: 2xx to RCPT TO (and to DATA with send); deferred: 4xx; refused: 5xx; failed: no RCPT reply was had
 * (connect, TLS, AUTH or MAIL FROM failed), or the credentials could not be resolved. */
export type AcceptanceResult = 'accepted' | 'deferred' | 'refused' | 'failed';

export interface AcceptanceProbe {
  /** RCPT TO this address. */
  address: string;
  /** MAIL FROM this address; '' is the null sender <> (the default: nothing can bounce back). */
  sender: string;
  /** Send a probe message (DATA) with this id in its marker header, instead of RSET after RCPT. */
  send?: { id: string; date: Date };
}

/** The server as the delivery would reach it (host: the address the reachability probe used), and what to ask. */
export interface AcceptanceTarget extends SmtpClientTarget {
  probe?: AcceptanceProbe;
}

export interface AcceptanceOutcome {
  /** Present when credentials were given: AUTH succeeded, or what failed. */
  auth?: { ok: boolean; message: string };
  /** Present with a probe address. */
  acceptance?: { address: string; result: AcceptanceResult; reply: string; sent?: string };
  /** The local address of this session. */
  localAddress?: string;
}

/** 2xx accepted, 4xx deferred, 5xx refused; anything else failed. Pure. */
export function classifyReply(code: number): AcceptanceResult {
  if (code >= 200 && code < 300) return 'accepted';
  if (code >= 400 && code < 500) return 'deferred';
  if (code >= 500 && code < 600) return 'refused';
  return 'failed';
}

/** The probe message: CRLF lines, a marker header, and a body that says what it is. Pure. */
export function probeMessage(o: {
  id: string;
  from: string;
  to: string;
  server: string;
  date: Date;
}): string {
  const from = o.from === '' ? `mailroute-preflight@${o.to.split('@')[1] ?? 'localhost'}` : o.from;
  return [
    `From: <${from}>`,
    `To: <${o.to}>`,
    `Subject: mailroute preflight probe ${o.id}`,
    `Date: ${o.date.toUTCString().replace(/GMT$/, '+0000')}`,
    `Message-ID: <${o.id}@mailroute-preflight>`,
    `${PROBE_HEADER}: ${o.id}`,
    'Auto-Submitted: auto-generated',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    `This message was sent by mailroute preflight --send to check that ${o.server} accepts mail`,
    'from this relay. It can be deleted.',
    '',
  ].join('\r\n');
}

const firstLine = (s: string): string => s.split(/\r?\n/)[0]?.trim() ?? '';

function errText(err: unknown): string {
  const e = err as { response?: unknown; code?: unknown; message?: unknown };
  if (typeof e.response === 'string' && e.response !== '') return firstLine(e.response);
  const m = typeof e.message === 'string' ? e.message : String(err);
  return typeof e.code === 'string' && !m.includes(e.code) ? `${e.code}: ${m}` : m;
}

/** Runs the acceptance step. Never rejects: every failure is in the outcome, naming the SMTP step. */
export async function runAcceptance(
  t: AcceptanceTarget,
  opts: { hostname: string; timeoutMs: number; ca?: string | Buffer | Array<string | Buffer> },
): Promise<AcceptanceOutcome> {
  const out: AcceptanceOutcome = {};
  const fail = (step: string, message: string): AcceptanceOutcome => {
    if (t.auth !== undefined && out.auth === undefined)
      out.auth = { ok: false, message: `${step}: ${message}` };
    if (t.probe !== undefined)
      out.acceptance = { address: t.probe.address, result: 'failed', reply: `${step}: ${message}` };
    return out;
  };
  const refusal = plaintextAuthRefusal(t, t.auth !== undefined);
  if (refusal !== undefined) return fail('AUTH', refusal);
  const options = smtpClientOptions(
    {
      host: t.host,
      ...(t.servername !== undefined ? { servername: t.servername } : {}),
      port: t.port,
      tls: t.tls,
      ...(t.auth !== undefined ? { auth: t.auth } : {}),
      ...(t.allowPlaintextAuth === true ? { allowPlaintextAuth: true } : {}),
    },
    {
      hostname: opts.hostname,
      timeouts: { connectionMs: opts.timeoutMs, greetingMs: opts.timeoutMs, socketMs: opts.timeoutMs },
    },
  );
  // Extra trusted CAs (as the reachability probe takes them) for RequiredVerify; the rest is delivery's.
  const conn = new SMTPConnection(
    opts.ca === undefined ? options : { ...options, tls: { ...options.tls, ca: opts.ca } },
  );
  // A failure arrives as the connect()/login() callback or as an 'error' (or 'end') event, as in the callout.
  let failed: ((err: Error) => void) | undefined;
  conn.on('error', (err: Error) => failed?.(err));
  conn.on('end', () => failed?.(new Error('connection closed by the server')));
  // A last resort against a session that stops answering without an error: closing it ends every wait below.
  const guard = setTimeout(() => conn.close(), 4 * opts.timeoutMs);
  const step = (run: (done: (err?: Error | null) => void) => void): Promise<Error | undefined> =>
    new Promise((resolve) => {
      failed = resolve;
      run((err) => resolve(err ?? undefined));
    });
  try {
    const connected = await step((done) => conn.connect(done));
    if (connected) return fail('connect', errText(connected));
    const socket = conn._socket as { localAddress?: string } | false | undefined;
    if (socket) out.localAddress = socket.localAddress;
    if (t.auth !== undefined) {
      const auth = t.auth;
      const loggedIn = await step((done) => conn.login({ user: auth.user, pass: auth.pass }, done));
      if (loggedIn) return fail('AUTH', errText(loggedIn));
      out.auth = { ok: true, message: `AUTH as ${auth.user} ok` };
    }
    failed = undefined;
    const p = t.probe;
    if (p === undefined) return out;
    const mail = await smtpCommand(conn, `MAIL FROM:<${p.sender}>`);
    if (!mail.startsWith('2')) return fail(`MAIL FROM:<${p.sender}>`, firstLine(mail));
    const rcpt = firstLine(await smtpCommand(conn, `RCPT TO:<${p.address}>`));
    const result = classifyReply(Number(rcpt.slice(0, 3)));
    out.acceptance = { address: p.address, result, reply: rcpt };
    if (result !== 'accepted' || p.send === undefined) {
      await smtpCommand(conn, 'RSET').catch(() => '');
      return out;
    }
    const data = firstLine(await smtpCommand(conn, 'DATA'));
    if (!data.startsWith('354')) {
      out.acceptance = {
        ...out.acceptance,
        result: classifyReply(Number(data.slice(0, 3))),
        reply: `DATA: ${data}`,
      };
      return out;
    }
    // The message is ours (no line starts with a dot): it is written as is, ended by <CRLF>.<CRLF>.
    const text = probeMessage({
      id: p.send.id,
      from: p.sender,
      to: p.address,
      server: t.servername ?? t.host,
      date: p.send.date,
    });
    const end = firstLine(await smtpCommand(conn, `${text}.`));
    const sent = classifyReply(Number(end.slice(0, 3)));
    out.acceptance = {
      ...out.acceptance,
      result: sent,
      sent: `${PROBE_HEADER}: ${p.send.id}: ${end}`,
      ...(sent === 'accepted' ? {} : { reply: `end of DATA: ${end}` }),
    };
    return out;
  } catch (err) {
    return fail('SMTP session', errText(err));
  } finally {
    clearTimeout(guard);
    try {
      conn.quit();
    } catch {
      // already closed
    }
    setTimeout(() => conn.close(), 1000).unref();
  }
}
