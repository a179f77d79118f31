// Where the relay and the operator may connect: a destination policy of CIDR lists, decided on the address actually
// connected to (after DNS), never on a host name. Pure: the relay (delivery, DSNs, recipient-verification callouts)
// and the operator (preflight) both import it.
//
//   parseCidrList(raw)                 'a/n, b, ...' -> Cidr[] or an error naming the bad entry
//   parseIpAddress(text)               an IPv4 or IPv6 address (IPv4-mapped IPv6 such as ::ffff:127.0.0.1 is IPv4)
//   destinationPolicy({deny, allow})   compiled, frozen policy
//   checkDestination(policy, address)  permitted, or not with the rule that denied it
//   withGrant(policy, grant)           the policy for the servers of one domain whose DomainClaim has destinations
//
// An address is denied when a deny entry contains it and no allow entry does: allow entries are exceptions to the
// deny list (deny 10.0.0.0/8, allow 10.1.2.3 reaches one server in a denied range). A text that is not an IP address
// (a host name that was never resolved, a numeric form such as 2130706433 or 127.1) is never permitted by a
// non-empty policy: the caller must resolve it first, and the resolver's answer is what gets checked.

export interface Cidr {
  family: 4 | 6;
  /** The network address (host bits cleared). */
  network: bigint;
  prefix: number;
  /** Canonical text, e.g. "127.0.0.0/8", "fe80::/10" (IPv6 written with bigint hex groups, uncompressed-safe). */
  text: string;
}

export interface IpAddress {
  family: 4 | 6;
  value: bigint;
}

export interface DestinationPolicy {
  readonly deny: readonly Cidr[];
  readonly allow: readonly Cidr[];
  /** The DomainClaim's destinations for the domain being delivered to (withGrant); absent: the global policy alone. */
  readonly grant?: GrantDestinations;
}

/** A DomainClaim's `destinations`, parsed: rules for the servers of the domains it grants. */
export interface GrantDestinations {
  readonly allow: readonly Cidr[];
  readonly deny: readonly Cidr[];
}

export type DestinationVerdict =
  | { permitted: true }
  | { permitted: false; /** the deny entry that matched, or 'not an IP address' */ rule: string };

/** Text every component shows for a refused destination; the same whether the port is open, closed or filtered. */
export const NOT_PERMITTED = 'not permitted by the destination policy';

/**
 * The default deny list of the cluster path (the chart, `mailroute operator`, a relay with --configmap): loopback,
 * unspecified, link-local (where cloud metadata services live: 169.254.169.254, fd00:ec2::254), other metadata
 * addresses, multicast and reserved ranges. The cluster's pod and service ranges are not knowable here: the admin
 * adds them (chart value destinations.deny).
 */
const CLUSTER_DEFAULT_DENY: readonly string[] = Object.freeze([
  '0.0.0.0/8', // "this network"; 0.0.0.0 connects to the local host
  '127.0.0.0/8', // loopback
  '169.254.0.0/16', // link-local, including 169.254.169.254 (AWS, GCP, Azure, OpenStack metadata)
  '100.100.100.200/32', // Alibaba Cloud metadata
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, including 255.255.255.255
  '::/128', // unspecified
  '::1/128', // loopback
  'fe80::/10', // link-local
  'fd00:ec2::254/128', // AWS metadata over IPv6
  'ff00::/8', // multicast
]);

const V4_BITS = 32;
const V6_BITS = 128;
const MAPPED_PREFIX = 0xffffn << 32n; // ::ffff:0:0/96

function parseV4(text: string): bigint | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  let value = 0n;
  for (const part of m.slice(1)) {
    // no leading zeros: 010 is octal to inet_aton, decimal to others
    if (part.length > 1 && part.startsWith('0')) return undefined;
    const n = Number(part);
    if (n > 255) return undefined;
    value = (value << 8n) | BigInt(n);
  }
  return value;
}

function parseV6(text: string): bigint | undefined {
  let s = text;
  const lastColon = s.lastIndexOf(':');
  if (lastColon >= 0 && s.slice(lastColon + 1).includes('.')) {
    // an embedded IPv4 address (::ffff:1.2.3.4) is the last two groups
    const v4 = parseV4(s.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    s = `${s.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const groups = (part: string | undefined): string[] =>
    part === undefined || part === '' ? [] : part.split(':');
  const head = groups(halves[0]);
  const rest = groups(halves[1]);
  const hex = [...head, ...rest];
  if (!hex.every((g) => /^[0-9a-f]{1,4}$/i.test(g))) return undefined;
  if (halves.length === 1 ? hex.length !== 8 : hex.length > 7) return undefined;
  const all = [...head, ...Array<string>(8 - hex.length).fill('0'), ...rest];
  return all.reduce((acc, g) => (acc << 16n) | BigInt(`0x${g}`), 0n);
}

/**
 * An IP address in canonical text form: dotted-quad IPv4 (no leading zeros, no decimal/hex/short forms), or IPv6
 * (optionally in brackets, with a zone suffix %eth0 ignored). IPv4-mapped IPv6 is returned as the IPv4 address.
 */
export function parseIpAddress(text: string): IpAddress | undefined {
  let s = text.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  const v4 = parseV4(s);
  if (v4 !== undefined) return { family: 4, value: v4 };
  if (!s.includes(':')) return undefined;
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  const v6 = parseV6(s);
  if (v6 === undefined) return undefined;
  if (v6 >> 32n === MAPPED_PREFIX >> 32n) return { family: 4, value: v6 & 0xffffffffn };
  return { family: 6, value: v6 };
}

function formatNetwork(family: 4 | 6, value: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join('.');
  const groups = [112n, 96n, 80n, 64n, 48n, 32n, 16n, 0n].map((shift) => (value >> shift) & 0xffffn);
  // compress the longest run of zero groups (RFC 5952)
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0n) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0n) j++;
    if (j - i > best.len && j - i > 1) best = { at: i, len: j - i };
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.at < 0) return hex.join(':');
  return `${hex.slice(0, best.at).join(':')}::${hex.slice(best.at + best.len).join(':')}`;
}

/** One CIDR ("10.0.0.0/8", "fe80::/10") or a bare address (a /32 or /128); host bits are cleared. */
export function parseCidr(text: string): Cidr | string {
  const s = text.trim();
  const slash = s.indexOf('/');
  const addrText = slash >= 0 ? s.slice(0, slash) : s;
  const ip = parseIpAddress(addrText);
  if (!ip) return `${JSON.stringify(text)} is not an IP address or CIDR (IPv4 a.b.c.d/n or IPv6 x:y::z/n)`;
  // An IPv4-mapped IPv6 CIDR (::ffff:127.0.0.0/104) is its IPv4 CIDR.
  const mapped = ip.family === 4 && addrText.includes(':');
  const bits = ip.family === 4 ? V4_BITS : V6_BITS;
  let prefix = bits;
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p)) return `${JSON.stringify(text)}: prefix length must be a number`;
    prefix = Number(p) - (mapped ? 96 : 0);
    if (prefix < 0 || prefix > bits) {
      return `${JSON.stringify(text)}: prefix length must be 0..${mapped ? 128 : bits}${mapped ? ' (96..128 for IPv4-mapped)' : ''}`;
    }
  }
  const hostBits = BigInt(bits - prefix);
  const network = (ip.value >> hostBits) << hostBits;
  return { family: ip.family, network, prefix, text: `${formatNetwork(ip.family, network)}/${prefix}` };
}

/** A comma (or whitespace) separated list of CIDRs; an error message naming the first bad entry. */
export function parseCidrList(raw: string | readonly string[]): Cidr[] | string {
  const items = (
    typeof raw === 'string' ? raw.split(/[\s,]+/) : raw.flatMap((r) => r.split(/[\s,]+/))
  ).filter((s) => s !== '');
  const out: Cidr[] = [];
  for (const item of items) {
    const c = parseCidr(item);
    if (typeof c === 'string') return c;
    out.push(c);
  }
  return out;
}

function contains(cidr: Cidr, ip: IpAddress): boolean {
  if (cidr.family !== ip.family) return false;
  const hostBits = BigInt((ip.family === 4 ? V4_BITS : V6_BITS) - cidr.prefix);
  return ip.value >> hostBits === cidr.network >> hostBits;
}

/** A frozen policy; lists of CIDR objects (already parsed). */
export function destinationPolicy(lists: {
  deny?: readonly Cidr[];
  allow?: readonly Cidr[];
}): DestinationPolicy {
  return Object.freeze({
    deny: Object.freeze([...(lists.deny ?? [])]),
    allow: Object.freeze([...(lists.allow ?? [])]),
  });
}

/**
 * Link-local and metadata addresses: a grant's allow never re-permits them (the relay's or the operator's cloud
 * credentials live behind them). --allow-destinations still can: that is the admin's global word.
 */
const NEVER_GRANTABLE: readonly string[] = Object.freeze([
  '169.254.0.0/16',
  '100.100.100.200/32',
  'fe80::/10',
  'fd00:ec2::254/128',
]);

/** The empty policy: everything permitted (a standalone relay without --deny-destinations). */
export const PERMIT_ALL: DestinationPolicy = destinationPolicy({});

/** Parses the cluster defaults; they are constants, so a failure is a bug. */
export function clusterDefaultDeny(): Cidr[] {
  const parsed = parseCidrList(CLUSTER_DEFAULT_DENY);
  if (typeof parsed === 'string') throw new Error(`CLUSTER_DEFAULT_DENY: ${parsed}`);
  return parsed;
}

let neverGrantable: Cidr[] | undefined;
function neverGrantableCidrs(): Cidr[] {
  if (neverGrantable) return neverGrantable;
  const parsed = parseCidrList(NEVER_GRANTABLE);
  if (typeof parsed === 'string') throw new Error(`NEVER_GRANTABLE: ${parsed}`);
  return (neverGrantable = parsed);
}

/**
 * The global policy (flags and cluster defaults) for the servers of one domain whose DomainClaim has `destinations`.
 * Without a grant (or with empty lists) the global policy as it is.
 */
export function withGrant(
  policy: DestinationPolicy,
  grant: GrantDestinations | undefined,
): DestinationPolicy {
  if (grant === undefined || (grant.allow.length === 0 && grant.deny.length === 0)) return policy;
  return Object.freeze({
    deny: policy.deny,
    allow: policy.allow,
    grant: Object.freeze({ allow: Object.freeze([...grant.allow]), deny: Object.freeze([...grant.deny]) }),
  });
}

/**
 * A DomainClaim's destinations as the routing table carries them (canonical CIDR texts). An entry that does not
 * parse (a table written by hand) fails closed: a bad deny entry denies everything, a bad allow entry is dropped.
 */
export function grantFromTexts(
  d: { allow?: readonly string[]; deny?: readonly string[] } | undefined,
): GrantDestinations | undefined {
  if (d === undefined) return undefined;
  const deny = parseCidrList(d.deny ?? []);
  const allow = d.allow?.flatMap((t) => {
    const c = parseCidr(t);
    return typeof c === 'string' ? [] : [c];
  });
  const denyAll = [parseCidr('0.0.0.0/0'), parseCidr('::/0')].filter((c): c is Cidr => typeof c !== 'string');
  return { allow: allow ?? [], deny: typeof deny === 'string' ? denyAll : deny };
}

/** An entry of a DomainClaim's destinations that grantFromTexts cannot read. */
interface GrantTextError {
  list: 'allow' | 'deny';
  index: number;
  /** The parser's words, naming the entry: `"10.0.0.0/33": prefix length must be 0..32`. */
  message: string;
}

/**
 * The entries grantFromTexts cannot read, in list order: each bad deny entry (it turns the deny list into "every
 * address"), then each bad allow entry (it is dropped). The compiler reports them on the MailDomains the claim
 * applies to.
 */
export function grantTextErrors(
  d: { allow?: readonly string[]; deny?: readonly string[] } | undefined,
): GrantTextError[] {
  const errors: GrantTextError[] = [];
  // read as grantFromTexts reads them: a deny entry through parseCidrList, an allow entry through parseCidr
  d?.deny?.forEach((t, index) => {
    const c = parseCidrList([t]);
    if (typeof c === 'string') errors.push({ list: 'deny', index, message: c });
  });
  d?.allow?.forEach((t, index) => {
    const c = parseCidr(t);
    if (typeof c === 'string') errors.push({ list: 'allow', index, message: c });
  });
  return errors;
}

/**
 * A DomainClaim's `destinations` as the routing table carries them: canonical CIDR texts, sorted, without duplicates;
 * undefined when both lists are empty. Entries the API server let through but the parser refuses fail closed (as in
 * grantFromTexts).
 */
export function canonicalGrantTexts(
  d: { allow?: readonly string[]; deny?: readonly string[] } | undefined,
): { allow: string[]; deny: string[] } | undefined {
  const g = grantFromTexts(d);
  if (g === undefined || (g.allow.length === 0 && g.deny.length === 0)) return undefined;
  const texts = (l: readonly Cidr[]): string[] =>
    [...new Set(l.map((c) => c.text))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return { allow: texts(g.allow), deny: texts(g.deny) };
}

/** True when the policy denies nothing (checks can be skipped). */
export function permitsEverything(policy: DestinationPolicy): boolean {
  return policy.deny.length === 0 && (policy.grant?.deny.length ?? 0) === 0;
}

/**
 * May we connect to this address? `address` is what the resolver returned, the address the socket will use.
 * In order: a grant's deny entry denies (it wins over every allow); an --allow-destinations entry permits; an address
 * no deny entry contains is permitted; a grant's allow entry permits (an exception to the deny list, for that
 * domain's servers only, never for link-local or metadata addresses, NEVER_GRANTABLE); else denied.
 */
export function checkDestination(policy: DestinationPolicy, address: string): DestinationVerdict {
  if (permitsEverything(policy)) return { permitted: true };
  const ip = parseIpAddress(address);
  if (!ip) return { permitted: false, rule: 'not an IP address' };
  const grantDeny = policy.grant?.deny.find((c) => contains(c, ip));
  if (grantDeny) return { permitted: false, rule: `${grantDeny.text} (DomainClaim)` };
  if (policy.allow.some((c) => contains(c, ip))) return { permitted: true };
  const rule = policy.deny.find((c) => contains(c, ip));
  if (!rule) return { permitted: true };
  const grantAllows =
    policy.grant?.allow.some((c) => contains(c, ip)) === true &&
    !neverGrantableCidrs().some((c) => contains(c, ip));
  return grantAllows ? { permitted: true } : { permitted: false, rule: rule.text };
}

/**
 * The policy of a relay or operator from its flags: in cluster mode CLUSTER_DEFAULT_DENY plus --deny-destinations,
 * otherwise --deny-destinations alone (a standalone relay may deliver to 127.0.0.1); --allow-destinations are the
 * exceptions. An error names the flag.
 */
export function policyFromFlags(o: {
  deny: string | undefined;
  allow: string | undefined;
  clusterDefaults: boolean;
}): DestinationPolicy | { flag: 'deny-destinations' | 'allow-destinations'; message: string } {
  const deny = parseCidrList(o.deny ?? '');
  if (typeof deny === 'string') return { flag: 'deny-destinations', message: deny };
  const allow = parseCidrList(o.allow ?? '');
  if (typeof allow === 'string') return { flag: 'allow-destinations', message: allow };
  return destinationPolicy({ deny: [...(o.clusterDefaults ? clusterDefaultDeny() : []), ...deny], allow });
}
