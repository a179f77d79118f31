// What a spool file may contain (pure: no I/O). The spool is input too: a corrupted disk, a bad restore or a local
// writer can put anything in a state, and its addresses go into SMTP commands downstream. Every field the relay uses
// is checked with the code that checks the same field on the way in: recipients with routing's parseAddress (the RCPT
// phase routes with it), senders with senderProblem (the MAIL phase), enums against routing/model.ts. A state that
// fails is quarantined by the spool, never delivered.
import { oneLine } from '../../lib/one-line.ts';
import { parseAddress, senderProblem } from '../../routing/address.ts';
import { BOUNCES, LEG_ROLES, TLS_MODES } from '../../routing/model.ts';
import { LEG_STATE_NAMES, type SpoolState } from './types.ts';

const DSN_ID_RE = /^[0-9a-z]{1,32}$/;
/** An RFC 3463 status code (goes into a DSN's Status: field). */
const STATUS_RE = /^[245]\.\d{1,3}\.\d{1,3}$/;
/** CR, LF and NUL: would end a line of a header or an SMTP command. */
const LINE_BREAK = /[\r\n\0]/;
// eslint-disable-next-line no-control-regex
const HOST_UNSAFE = /[\x00-\x20\x7f/\\@]/;

type Obj = Record<string, unknown>;
const isObj = (x: unknown): x is Obj => typeof x === 'object' && x !== null && !Array.isArray(x);
const oneOf = (list: readonly string[], x: unknown): boolean => typeof x === 'string' && list.includes(x);
const isCount = (x: unknown): boolean => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
const isCrc32 = (x: unknown): boolean =>
  typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 0xffffffff;
const isTime = (x: unknown): boolean => typeof x === 'string' && !Number.isNaN(Date.parse(x));
const isLine = (x: unknown): boolean => typeof x === 'string' && !LINE_BREAK.test(x);
const show = (x: unknown): string => JSON.stringify(x)?.slice(0, 80) ?? String(x);

/**
 * An envelope recipient read back: parseAddress, as the RCPT phase routes it; the recipient of a DSN (sent from <>)
 * is the original envelope sender, which came through the MAIL phase, so senderProblem there.
 */
function recipientProblem(x: unknown, dsn: boolean): string | undefined {
  if (typeof x !== 'string') return 'not a string';
  if (dsn) return x === '' ? 'empty' : senderProblem(x);
  const p = parseAddress(x);
  return p.ok ? undefined : p.reason;
}

function serverProblem(s: unknown): string | undefined {
  if (!isObj(s)) return 'not an object';
  if (typeof s.name !== 'string' || !isLine(s.name)) return 'name: not a string';
  if (typeof s.host !== 'string' || s.host === '' || s.host.length > 255 || HOST_UNSAFE.test(s.host))
    return `host: ${show(s.host)}`;
  if (typeof s.port !== 'number' || !Number.isInteger(s.port) || s.port < 1 || s.port > 65535)
    return `port: ${show(s.port)}`;
  if (typeof s.mx !== 'boolean') return `mx: ${show(s.mx)}`;
  if (!oneOf(TLS_MODES, s.tls)) return `tls: ${show(s.tls)} is not one of ${TLS_MODES.join(', ')}`;
  if (!isCount(s.maxConnections) || s.maxConnections === 0)
    return `maxConnections: ${show(s.maxConnections)}`;
  if (
    s.maxRecipientsPerTransaction !== undefined &&
    (!isCount(s.maxRecipientsPerTransaction) || s.maxRecipientsPerTransaction === 0)
  )
    return `maxRecipientsPerTransaction: ${show(s.maxRecipientsPerTransaction)}`;
  if (s.authSecretRef !== undefined) {
    const a = s.authSecretRef;
    if (!isObj(a) || typeof a.namespace !== 'string' || typeof a.name !== 'string')
      return 'authSecretRef: malformed';
  }
  return undefined;
}

function legProblem(l: unknown, dsn: boolean): string | undefined {
  if (!isObj(l)) return 'not an object';
  const r = recipientProblem(l.recipient, dsn);
  if (r !== undefined) return `recipient: ${r}`;
  if (!oneOf(LEG_STATE_NAMES, l.state)) return `state: ${show(l.state)}`;
  if (!isCount(l.attempts)) return `attempts: ${show(l.attempts)}`;
  for (const k of ['nextAttemptAt', 'lastAttemptAt'] as const) {
    if (l[k] !== undefined && !isTime(l[k])) return `${k}: not a time`;
  }
  // lastReply is a remote server's words, kept to be shown: a control character in it (written by a version that kept
  // them) is repaired by checkState, never a reason to quarantine the message
  if (l.lastReply !== undefined && typeof l.lastReply !== 'string') return 'lastReply: not a string';
  if (l.lastServer !== undefined && !isLine(l.lastServer)) return 'lastServer: not a one-line string';
  if (l.status !== undefined && !(typeof l.status === 'string' && STATUS_RE.test(l.status)))
    return `status: ${show(l.status)}`;
  for (const k of ['dsnPending', 'delayPending', 'expired'] as const) {
    if (l[k] !== undefined && typeof l[k] !== 'boolean') return `${k}: not a boolean`;
  }
  // a queue id, or 'none' / 'unroutable' (relay/delivery/bounce.ts)
  for (const k of ['dsnId', 'delayDsnId'] as const) {
    const v = l[k];
    if (v !== undefined && !(typeof v === 'string' && DSN_ID_RE.test(v))) return `${k}: ${show(v)}`;
  }
  const leg = l.leg;
  if (!isObj(leg)) return 'leg: not an object';
  const s = serverProblem(leg.server);
  if (s !== undefined) return `leg.server.${s}`;
  const lr = recipientProblem(leg.recipient, dsn);
  if (lr !== undefined) return `leg.recipient: ${lr}`;
  if (!oneOf(LEG_ROLES, leg.role)) return `leg.role: ${show(leg.role)}`;
  if (!oneOf(BOUNCES, leg.bounces)) return `leg.bounces: ${show(leg.bounces)}`;
  return undefined;
}

/**
 * Validates what JSON.parse returned for message `id`; a string names the first problem and its field. A leg's
 * lastReply with line breaks or control characters comes back repaired (oneLine), in a copy.
 */
export function checkState(x: unknown, id: string): SpoolState | string {
  if (!isObj(x)) return 'not an object';
  if (x.version !== 1) return `version: expected 1, got ${show(x.version)}`;
  if (x.id !== id) return `id: expected ${id}, got ${show(x.id)}`;
  const m = x.meta;
  if (!isObj(m)) return 'meta: missing';
  if (typeof m.mailFrom !== 'string') return 'meta.mailFrom: not a string';
  const sp = senderProblem(m.mailFrom);
  if (sp !== undefined) return `meta.mailFrom: ${sp}`;
  if (!isTime(m.receivedAt)) return 'meta.receivedAt: not a time';
  for (const k of ['clientAddress', 'clientHostname', 'helo', 'revision'] as const) {
    if (!isLine(m[k])) return `meta.${k}: not a one-line string`;
  }
  for (const k of ['smtputf8', 'body8bit'] as const) {
    if (typeof m[k] !== 'boolean') return `meta.${k}: not a boolean`;
  }
  if (!isCount(x.size)) return `size: ${show(x.size)}`;
  // absent in states written before it existed; when present, a CRC-32 (an unsigned 32-bit integer)
  if (x.bodyCrc32 !== undefined && !isCrc32(x.bodyCrc32)) return `bodyCrc32: ${show(x.bodyCrc32)}`;
  if (!Array.isArray(x.legs)) return 'legs: missing';
  const dsn = m.mailFrom === '';
  for (const [i, l] of (x.legs as unknown[]).entries()) {
    const p = legProblem(l, dsn);
    if (p !== undefined) return `legs[${i}].${p}`;
  }
  const state = x as unknown as SpoolState;
  if (!state.legs.some((l) => l.lastReply !== undefined && l.lastReply !== oneLine(l.lastReply)))
    return state;
  return {
    ...state,
    legs: state.legs.map((l) => (l.lastReply === undefined ? l : { ...l, lastReply: oneLine(l.lastReply) })),
  };
}
