// The destination policy (routing/destinations.ts) at the relay's DNS seam: every address the relay connects to for
// delivery, DSNs and recipient-verification callouts comes from DnsResolver.addresses(), so the policy is applied to
// the answer, the address the socket will use. A host whose every address is denied fails with
// DestinationDeniedError before any connection is made; denied addresses among permitted ones are dropped.
//
// Numeric host forms (2130706433, 0x7f000001, 127.1) are no exception: the system resolver (getaddrinfo) turns them
// into the dotted address they stand for, and that is what is checked. --peers lookups (other relays, on pod
// addresses) do not go through this guard.
import {
  checkDestination,
  NOT_PERMITTED,
  permitsEverything,
  type DestinationPolicy,
} from '../routing/destinations.ts';
import type { DnsResolver } from './dns.ts';

export class DestinationDeniedError extends Error {
  readonly code = 'EDESTDENIED';
  readonly host: string;
  readonly denied: readonly { address: string; rule: string }[];
  constructor(host: string, denied: readonly { address: string; rule: string }[]) {
    const addresses = denied.map((d) => d.address);
    const what = addresses.length === 1 && addresses[0] === host ? host : `${host} (${addresses.join(', ')})`;
    super(`${what}: ${NOT_PERMITTED} (${[...new Set(denied.map((d) => d.rule))].join(', ')})`);
    this.name = 'DestinationDeniedError';
    this.host = host;
    this.denied = denied;
  }
}

export function isDestinationDenied(err: unknown): err is DestinationDeniedError {
  return err instanceof DestinationDeniedError;
}

/**
 * The resolver with the policy applied to addresses(); MX lookups pass through (an MX host is resolved by
 * addresses() before it is connected to). onDenied is called once per host refused outright.
 */
export function guardResolver<R extends Pick<DnsResolver, 'resolveMx' | 'addresses'>>(
  resolver: R,
  policy: DestinationPolicy,
  onDenied?: (err: DestinationDeniedError) => void,
): R {
  if (permitsEverything(policy)) return resolver;
  return {
    ...resolver,
    resolveMx: (name: string) => resolver.resolveMx(name),
    async addresses(host: string): Promise<string[]> {
      const found = await resolver.addresses(host);
      const permitted: string[] = [];
      const denied: { address: string; rule: string }[] = [];
      for (const address of found) {
        const v = checkDestination(policy, address);
        if (v.permitted) permitted.push(address);
        else denied.push({ address, rule: v.rule });
      }
      if (permitted.length > 0 || denied.length === 0) return permitted;
      const err = new DestinationDeniedError(host, denied);
      onDenied?.(err);
      throw err;
    },
  };
}
