// Which clients are peer relays, for the hand-off parameters (handoff.ts): the addresses the relay's own `--peers`
// hosts resolve to (a headless Service name resolves to every relay pod; it publishes not-ready pods too, so a
// draining relay is still among them) and, in cluster mode, the addresses in the other relays' fresh heartbeat
// Leases (`mailroute.io/smtp`, ready or not: the relays a draining relay finds its peers by; in the chart only the
// relay ServiceAccount and the operator may write Leases in the relay namespace). The resolution (relay/dns.ts) is injected; the answer is cached, re-resolved
// when older than refreshMs, and at once (at most every missRefreshMs) when a client is not in it, so a pod that
// has just started is known at its first hand-off. A host that fails to resolve counts as no address (fail closed:
// the hand-off is refused and the message stays with the relay that hands it over). No hosts and no Leases: nobody
// is a peer, and nothing is resolved. Only a client that sends a hand-off parameter is looked up; other clients cost nothing.
import { isPeerAddress } from './handoff.ts';

export interface PeerTrustOptions {
  /** The host parts of --peers (names or IP literals). */
  hosts: readonly string[];
  /** A host's addresses (relay/dns.ts DnsResolver.addresses); rejects when it has none. */
  resolve: (host: string) => Promise<string[]>;
  /**
   * More peer addresses, asked with every resolution: in cluster mode the SMTP addresses of the other relays' fresh
   * heartbeat Leases (relay/cluster), ready or not. Rejecting counts as none.
   */
  more?: () => Promise<string[]>;
  /** Addresses older than this are resolved again before a decision. Default 30 s. */
  refreshMs?: number;
  /** A client not among the addresses has them resolved again, at most this often. Default 2 s. */
  missRefreshMs?: number;
  /**
   * The longest one lookup (a --peers name, the Lease list) may take; then it counts as none (not a peer). Default 3 s:
   * an API server that drops packets held every hand-off's MAIL FROM until the peer's own timeout.
   */
  lookupTimeoutMs?: number;
  /** Monotonic milliseconds. */
  now?: () => number;
}

export interface PeerTrust {
  /** Whether a client address is one of the peers' addresses; never rejects. */
  isPeer(client: string): Promise<boolean>;
}

export function createPeerTrust(o: PeerTrustOptions): PeerTrust {
  const hosts = [...new Set(o.hosts)];
  const refreshMs = o.refreshMs ?? 30_000;
  const missRefreshMs = o.missRefreshMs ?? 2_000;
  const now = o.now ?? (() => performance.now());
  let addresses: readonly string[] = [];
  let resolvedAt = -Infinity;
  let inflight: Promise<void> | undefined;

  const lookupMs = o.lookupTimeoutMs ?? 3_000;
  /** The addresses a lookup finds, or none when it fails or takes longer than lookupMs. */
  const within = (lookup: () => Promise<string[]>): Promise<string[]> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => resolve([]), lookupMs);
      timer.unref();
      const done = (found: string[]): void => {
        clearTimeout(timer);
        resolve(found);
      };
      lookup().then(done, () => done([]));
    });

  const refresh = (): Promise<void> =>
    (inflight ??= (async () => {
      const more = o.more;
      const found = await Promise.all([
        ...hosts.map((h) => within(() => o.resolve(h))),
        more === undefined ? [] : within(more),
      ]);
      addresses = found.flat();
      resolvedAt = now();
    })().finally(() => (inflight = undefined)));

  return {
    async isPeer(client) {
      if (hosts.length === 0 && o.more === undefined) return false;
      const age = now() - resolvedAt;
      if (age >= refreshMs || (age >= missRefreshMs && !isPeerAddress(client, addresses))) await refresh();
      return isPeerAddress(client, addresses);
    },
  };
}
