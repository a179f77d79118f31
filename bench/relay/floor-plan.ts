// The floor relay's routing (pure): which server gets which recipients, from the MailDomain and DeliveryPolicy the
// benchmark writes for mailroute (mailroute.ts), as the project's manifest loader returns them (lib/manifests.ts,
// validated against the CRD schema); and the two wire forms of a message body. See floor-relay.ts.
import type { DeliveryPolicy, MailDomain, MailrouteObject } from '../../routing/types.ts';

export type FloorMode = DeliveryPolicy['spec']['mode'];

/**
 * The relay's parts floor-relay.ts --with puts in place of its own (here, not in options.ts: the benchmark's copy of
 * the sources for the relay holds floor-relay.ts, this file, accept-log.ts and smtp-server-options.ts only). client and nodemailer are both outbound clients.
 * log is not a part of the relay: the floor's own files without their fsyncs, made durable by a write-ahead log
 * (accept-log.ts) instead, the design docs/perf.md "The journal's share" measures.
 */
export const FLOOR_PARTS = ['smtp-server', 'client', 'nodemailer', 'pino', 'spool', 'log'] as const;

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

/**
 * The plan of the one MailDomain and DeliveryPolicy among `objects`: the ports of the policy's primary and secondary
 * servers, the copy domain and the primary's accounts. Throws naming what is missing.
 */
export function floorPlan(objects: readonly MailrouteObject[]): FloorPlan {
  const domain = objects.find((o): o is MailDomain => o.kind === 'MailDomain');
  const policy = objects.find((o): o is DeliveryPolicy => o.kind === 'DeliveryPolicy');
  if (domain === undefined || policy === undefined)
    throw new Error('floor: the manifests need one MailDomain and one DeliveryPolicy');
  const p = policy.spec;
  const portOf = (name: string | undefined, field: string): number => {
    const server = domain.spec.servers.find((s) => s.name === name);
    if (server === undefined)
      throw new Error(
        `floor: DeliveryPolicy.spec.${field} ${JSON.stringify(name ?? '')} is not a server of the MailDomain`,
      );
    return server.port;
  };
  const known = new Set<string>();
  for (const a of domain.spec.accounts ?? [])
    if (a.server === p.primary) for (const addr of a.addresses) known.add(addr.toLowerCase());
  return {
    mode: p.mode,
    primaryPort: portOf(p.primary, 'primary'),
    secondaryPort: p.mode === 'Direct' ? undefined : portOf(p.secondary, 'secondary'),
    copyDomain: p.mode === 'Dual' ? p.dual?.copyRecipientDomain : undefined,
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
