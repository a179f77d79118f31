// The key under which per-client limits count a client address (connections per IP, unknown recipients per IP, the
// HTTP listeners' connections per address). An IPv4 address is its own key. An IPv6 client usually holds a whole
// network (a /64 is what a host or a LAN is given), so counting each of its addresses apart lets one client open as
// many connections, or probe as many recipients, as it has addresses: its key is its network, the address with
// every bit past the prefix zeroed (Postfix 3.8 aggregates its client statistics the same way,
// smtpd_client_ipv6_prefix_length). An IPv4 address mapped into IPv6 (::ffff:192.0.2.1, what a dual-stack listener
// reports) counts as the IPv4 address. Anything that does not parse is its own key.
//
// Exports: DEFAULT_IPV6_PREFIX, clientNetwork(address, ipv6Prefix).
import { isIPv4, isIPv6 } from 'node:net';

/** The prefix length an IPv6 client is counted by, unless configured (--client-ipv6-prefix). */
export const DEFAULT_IPV6_PREFIX = 64;

/** The key of a client address: an IPv4 address, or an IPv6 network "2001:db8:1:2:0:0:0:0/64" (128: the address). */
export function clientNetwork(address: string, ipv6Prefix: number = DEFAULT_IPV6_PREFIX): string {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  const zone = bare.indexOf('%');
  const ip = zone === -1 ? bare : bare.slice(0, zone);
  if (isIPv4(ip)) return ip;
  if (!isIPv6(ip)) return address;
  const groups = ipv6Groups(ip);
  if (groups === undefined) return address;
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const hi = groups[6] ?? 0;
    const lo = groups[7] ?? 0;
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  const prefix = Math.max(0, Math.min(128, Math.trunc(ipv6Prefix)));
  const masked = groups.map((g, i) => {
    const keep = Math.max(0, Math.min(16, prefix - i * 16));
    return keep === 0 ? 0 : g & ((0xffff << (16 - keep)) & 0xffff);
  });
  // a key, never shown: the groups in full (no "::"), so equal networks give equal strings
  return `${masked.map((g) => g.toString(16)).join(':')}/${prefix}`;
}

/** The eight 16-bit groups of an address node:net accepts as IPv6 (an IPv4 tail, "::ffff:1.2.3.4", is two groups). */
function ipv6Groups(ip: string): number[] | undefined {
  let text = ip.toLowerCase();
  const lastColon = text.lastIndexOf(':');
  const last = text.slice(lastColon + 1);
  if (last.includes('.')) {
    const o = last.split('.').map(Number);
    if (o.length !== 4 || o.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) return undefined;
    const [a = 0, b = 0, c = 0, d = 0] = o;
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((h) => parseInt(h, 16)));
  const head = parse(halves[0] ?? '');
  const rest = halves.length === 2 ? parse(halves[1] ?? '') : [];
  const fill = 8 - head.length - rest.length;
  if (fill < 0 || (halves.length === 1 && fill !== 0)) return undefined;
  const groups = [...head, ...new Array<number>(halves.length === 2 ? fill : 0).fill(0), ...rest];
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff))
    return undefined;
  return groups;
}
