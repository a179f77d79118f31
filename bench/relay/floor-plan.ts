// The floor relay's routing (pure): which server gets which recipients, read from the same manifests the benchmark
// writes for mailroute (mailroute.ts), and the two wire forms of a message body. See floor-relay.ts.
import { parseAllDocuments } from 'yaml';

export type FloorMode = 'Direct' | 'Dual' | 'Split';

export interface FloorPlan {
  readonly mode: FloorMode;
  readonly primaryPort: number;
  /** Dual and Split. */
  readonly secondaryPort: number | undefined;
  /** Dual: copies go to the recipient's local part at this domain. */
  readonly copyDomain: string | undefined;
  /** Split: the recipients that have an account on the primary (lowercase). */
  readonly knownOnPrimary: ReadonlySet<string>;
}

export interface FloorLeg {
  readonly port: number;
  readonly rcpts: readonly string[];
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function field(o: Record<string, unknown>, name: string, where: string): Record<string, unknown> {
  const v = o[name];
  if (!isRecord(v)) throw new Error(`floor: ${where}.${name} is missing`);
  return v;
}

/**
 * The plan of the one MailDomain and DeliveryPolicy in `yamlTexts` (the benchmark's manifests): the ports of the
 * policy's primary and secondary servers, the copy domain and the primary's accounts. Throws naming the field that
 * is missing or not understood.
 */
export function floorPlan(yamlTexts: readonly string[]): FloorPlan {
  const docs: Record<string, unknown>[] = [];
  for (const text of yamlTexts)
    for (const d of parseAllDocuments(text)) {
      const v: unknown = d.toJS();
      if (isRecord(v)) docs.push(v);
    }
  const domain = docs.find((d) => d['kind'] === 'MailDomain');
  const policy = docs.find((d) => d['kind'] === 'DeliveryPolicy');
  if (domain === undefined || policy === undefined)
    throw new Error('floor: the manifests need one MailDomain and one DeliveryPolicy');
  const dspec = field(domain, 'spec', 'MailDomain');
  const pspec = field(policy, 'spec', 'DeliveryPolicy');
  const servers = Array.isArray(dspec['servers']) ? dspec['servers'].filter(isRecord) : [];
  const portOf = (name: unknown, what: string): number => {
    const s = servers.find((x) => x['name'] === name);
    const port = s?.['port'];
    if (typeof port !== 'number')
      throw new Error(`floor: DeliveryPolicy.spec.${what} names no server with a port`);
    return port;
  };
  const mode = pspec['mode'];
  if (mode !== 'Direct' && mode !== 'Dual' && mode !== 'Split')
    throw new Error(`floor: DeliveryPolicy.spec.mode ${JSON.stringify(mode)} is not Direct, Dual or Split`);
  const primaryPort = portOf(pspec['primary'], 'primary');
  const secondaryPort = mode === 'Direct' ? undefined : portOf(pspec['secondary'], 'secondary');
  const dual = isRecord(pspec['dual']) ? pspec['dual'] : {};
  const copy = dual['copyRecipientDomain'];
  const known = new Set<string>();
  const accounts = Array.isArray(dspec['accounts']) ? dspec['accounts'].filter(isRecord) : [];
  for (const a of accounts) {
    if (a['server'] !== pspec['primary'] || !Array.isArray(a['addresses'])) continue;
    for (const addr of a['addresses']) if (typeof addr === 'string') known.add(addr.toLowerCase());
  }
  return {
    mode,
    primaryPort,
    secondaryPort,
    copyDomain: mode === 'Dual' && typeof copy === 'string' ? copy : undefined,
    knownOnPrimary: known,
  };
}

/** The recipient at another domain (the local part kept as it is). */
export function atDomain(rcpt: string, domain: string): string {
  const at = rcpt.lastIndexOf('@');
  return `${at < 0 ? rcpt : rcpt.slice(0, at)}@${domain}`;
}

/** The transactions one message needs: Direct one, Dual two (the copy at copyDomain), Split one per side. */
export function floorLegs(plan: FloorPlan, rcpts: readonly string[]): FloorLeg[] {
  switch (plan.mode) {
    case 'Direct':
      return [{ port: plan.primaryPort, rcpts }];
    case 'Dual': {
      const secondary = plan.secondaryPort ?? plan.primaryPort;
      const copy = plan.copyDomain;
      return [
        { port: plan.primaryPort, rcpts },
        { port: secondary, rcpts: copy === undefined ? rcpts : rcpts.map((r) => atDomain(r, copy)) },
      ];
    }
    case 'Split': {
      const known = rcpts.filter((r) => plan.knownOnPrimary.has(r.toLowerCase()));
      const unknown = rcpts.filter((r) => !plan.knownOnPrimary.has(r.toLowerCase()));
      const out: FloorLeg[] = [];
      if (known.length > 0) out.push({ port: plan.primaryPort, rcpts: known });
      if (unknown.length > 0) out.push({ port: plan.secondaryPort ?? plan.primaryPort, rcpts: unknown });
      return out;
    }
  }
}

const TERMINATOR = Buffer.from('.\r\n');

/**
 * A message as it goes after DATA (RFC 5321 §4.5.2): lines starting with a dot get another, a last line without its
 * CRLF gets one, and the final `.` line follows.
 */
export function toWire(message: Buffer): Buffer {
  const text = message.toString('latin1');
  let out = (text.startsWith('.') ? '.' : '') + text.replace(/\r\n\./g, '\r\n..');
  if (out.length > 0 && !out.endsWith('\r\n')) out += '\r\n';
  return Buffer.concat([Buffer.from(out, 'latin1'), TERMINATOR]);
}

/** The message in a DATA section as received (dot-stuffed, ending with CRLF `.` CRLF): the inverse of toWire. */
export function fromWire(wire: Buffer): Buffer {
  const text = wire.subarray(0, wire.length - TERMINATOR.length).toString('latin1');
  return Buffer.from((text.startsWith('.') ? text.slice(1) : text).replace(/\r\n\.\./g, '\r\n.'), 'latin1');
}
