// A real DNS responder on loopback UDP for tests: answers A, AAAA and MX queries from a small zone of made-up names
// (e.g. mx.mailroute.test -> 127.0.0.1) that the system resolver does not know, NXDOMAIN for any other name, and
// records every question it was asked. Enough of RFC 1035 for c-ares (node:dns): one question, answers pointing at
// it by compression, EDNS OPT records in the query ignored.
import { createSocket, type Socket } from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';

export interface Zone {
  /** name -> IPv4 addresses */
  a?: Record<string, string[]>;
  /** name -> IPv6 addresses */
  aaaa?: Record<string, string[]>;
  /** name -> MX records */
  mx?: Record<string, { priority: number; exchange: string }[]>;
}

export interface DnsServer {
  readonly port: number;
  /** "127.0.0.1:PORT", for MAILROUTE_DNS_SERVERS / --dns-servers. */
  readonly address: string;
  /** Every question, as "TYPE name" (e.g. "A mx.mailroute.test"). */
  readonly queries: string[];
  zone: Zone;
  close(): Promise<void>;
}

const TYPES: Record<number, string> = { 1: 'A', 28: 'AAAA', 15: 'MX' };

function encodeName(name: string): Buffer {
  const labels = name
    .replace(/\.$/, '')
    .split('.')
    .filter((l) => l !== '');
  return Buffer.concat([
    ...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')])),
    Buffer.from([0]),
  ]);
}

function ipv6Bytes(ip: string): Buffer {
  const [head = '', tail = ''] = ip.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === '' ? [] : tail.split(':');
  const groups = ip.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

/** The answer to one query packet, or undefined for a packet that is not a query. Pure. */
function answer(query: Buffer, zone: Zone): { response: Buffer; question: string } | undefined {
  if (query.length < 12 || (query[2]! & 0x80) !== 0) return undefined;
  const qdcount = query.readUInt16BE(4);
  if (qdcount !== 1) return undefined;
  let off = 12;
  const labels: string[] = [];
  for (;;) {
    const len = query[off];
    if (len === undefined) return undefined;
    off++;
    if (len === 0) break;
    labels.push(query.toString('ascii', off, off + len));
    off += len;
  }
  if (off + 4 > query.length) return undefined;
  const qtype = query.readUInt16BE(off);
  const questionEnd = off + 4;
  const name = labels.join('.').toLowerCase();
  const type = TYPES[qtype] ?? `TYPE${qtype}`;
  const rdatas: Buffer[] = [];
  if (type === 'A')
    for (const ip of zone.a?.[name] ?? [])
      if (isIPv4(ip)) rdatas.push(Buffer.from(ip.split('.').map(Number)));
  if (type === 'AAAA') for (const ip of zone.aaaa?.[name] ?? []) if (isIPv6(ip)) rdatas.push(ipv6Bytes(ip));
  if (type === 'MX') {
    for (const mx of zone.mx?.[name] ?? []) {
      const pref = Buffer.alloc(2);
      pref.writeUInt16BE(mx.priority);
      rdatas.push(Buffer.concat([pref, encodeName(mx.exchange)]));
    }
  }
  const known = name in (zone.a ?? {}) || name in (zone.aaaa ?? {}) || name in (zone.mx ?? {});
  const header = Buffer.alloc(12);
  query.copy(header, 0, 0, 2); // id
  const rd = query[2]! & 0x01;
  header[2] = 0x80 | 0x04 | rd; // QR, AA, RD as asked
  header[3] = 0x80 | (known ? 0 : 3); // RA; NXDOMAIN for a name the zone does not have
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(rdatas.length, 6);
  const answers = rdatas.map((rdata) => {
    const rr = Buffer.alloc(12);
    rr.writeUInt16BE(0xc00c, 0); // the question's name
    rr.writeUInt16BE(qtype, 2);
    rr.writeUInt16BE(1, 4); // IN
    rr.writeUInt32BE(60, 6);
    rr.writeUInt16BE(rdata.length, 10);
    return Buffer.concat([rr, rdata]);
  });
  return {
    response: Buffer.concat([header, query.subarray(12, questionEnd), ...answers]),
    question: `${type} ${name}`,
  };
}

export async function startDnsServer(zone: Zone): Promise<DnsServer> {
  const socket: Socket = createSocket('udp4');
  const queries: string[] = [];
  const server: DnsServer = {
    port: 0,
    address: '',
    queries,
    zone,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
  socket.on('message', (msg, rinfo) => {
    const r = answer(msg, server.zone);
    if (!r) return;
    queries.push(r.question);
    socket.send(r.response, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  const port = socket.address().port;
  return Object.assign(server, { port, address: `127.0.0.1:${port}` });
}
