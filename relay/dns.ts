// The relay's one DNS seam: MX records, and the A/AAAA addresses of every host name it connects to (delivery, the
// MX hosts of mx: true servers and of DSN routes, --dsn-relay, recipient-verification callouts, --peers). Nothing in
// the relay hands a host name to nodemailer or net.connect: names are resolved here and an address is connected to,
// with the name kept for TLS (SNI and certificate verification).
//
// With MAILROUTE_DNS_SERVERS (`--dns-servers`) every query goes to those servers (a private resolver; names are
// looked up as given, no search domains, and `/etc/hosts` is not read, except that `localhost` and `*.localhost`
// are the loopback addresses, RFC 6761). Without it MX records come from the system's DNS servers and addresses from
// the system resolver (getaddrinfo: `/etc/hosts`, search domains, as any program on the machine).
import { isIP } from 'node:net';
import { promises as dns } from 'node:dns';

interface MxRecord {
  exchange: string;
  priority: number;
}

export interface DnsResolver {
  /** The MX records of a domain; rejects with the DNS error (code ENODATA, ENOTFOUND, ...). */
  resolveMx(name: string): Promise<MxRecord[]>;
  /**
   * The addresses to connect to for a host name, IPv4 first; an IP literal is its own address. Rejects with the DNS
   * error (code ENOTFOUND, ENODATA, ETIMEOUT, ...) when there is none.
   */
  addresses(host: string): Promise<string[]>;
}

export interface DnsResolverOptions {
  /** DNS servers (IP or IP:PORT, [IPv6]:PORT); undefined: the system's. */
  servers?: readonly string[];
  /** Per query attempt. Default 5 s. */
  timeoutMs?: number;
  /** Attempts per server. Default 2. */
  tries?: number;
}

const isLocalhost = (host: string): boolean => /^(?:.+\.)?localhost\.?$/i.test(host);

/** Parses a MAILROUTE_DNS_SERVERS value; a string saying what is wrong, else the list. */
export function parseDnsServers(raw: string): readonly string[] | string {
  const servers = raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (servers.length === 0) return 'must list at least one DNS server (IP or IP:PORT)';
  try {
    new dns.Resolver().setServers(servers);
  } catch (err) {
    return (err as Error).message;
  }
  return Object.freeze(servers);
}

export function createDnsResolver(opts: DnsResolverOptions = {}): DnsResolver {
  const servers = opts.servers;
  if (servers === undefined) {
    return {
      resolveMx: (name) => dns.resolveMx(name),
      async addresses(host) {
        if (isIP(host) !== 0) return [host];
        const found = await dns.lookup(host, { all: true, order: 'ipv4first' });
        return [...new Set(found.map((a) => a.address))];
      },
    };
  }
  const resolver = new dns.Resolver({ timeout: opts.timeoutMs ?? 5000, tries: opts.tries ?? 2 });
  resolver.setServers([...servers]);
  return {
    resolveMx: (name) => resolver.resolveMx(name),
    async addresses(host) {
      if (isIP(host) !== 0) return [host];
      if (isLocalhost(host)) return ['127.0.0.1', '::1'];
      const [v4, v6] = await Promise.allSettled([resolver.resolve4(host), resolver.resolve6(host)]);
      const found = [
        ...(v4.status === 'fulfilled' ? v4.value : []),
        ...(v6.status === 'fulfilled' ? v6.value : []),
      ];
      if (found.length > 0) return found;
      // Both failed or both empty: the IPv4 answer says why (ENOTFOUND for a name that does not exist).
      if (v4.status === 'rejected') throw v4.reason;
      if (v6.status === 'rejected') throw v6.reason;
      throw Object.assign(new Error(`no address for ${host}`), { code: 'ENODATA' });
    },
  };
}
