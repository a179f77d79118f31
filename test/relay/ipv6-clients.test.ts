// Per-client limits against an IPv6 client that holds a whole /64 (lib/client-network.ts): a real relay process in a
// network namespace of its own (unshare --net: only its loopback, with 60 addresses of 2001:db8:77:1::/64 added to
// it, all gone with the namespace), and a client in the same namespace (nsenter, Python sockets) that connects from
// each of those addresses in turn. Proves:
// - SMTP: with the default --client-ipv6-prefix 64, the 60 addresses are one client: 50 sessions
//   (--max-connections-per-ip) get the greeting, the other 10 get 421 4.7.0; with --client-ipv6-prefix 128 every
//   address is its own client and all 60 are greeted;
// - HTTP (/metrics /healthz, 8 connections per client): 20 connections from 20 addresses of the /64 that send half a
//   request: 8 are held, 12 closed at once;
// - unknown recipients (--max-unknown-recipients-per-ip 10, Split with unknownRecipients Reject): 3 refused RCPTs
//   from each of 5 addresses: the 11th, from the fourth address, gets 421 4.7.0; with the prefix 128, all 15 get 550.
// Before, each address counted apart: one host with a /64 had no connection limit at all.
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { dualDomain, spawnRelay, tempDir, writeManifests, type RelayChild } from './relay-harness.ts';

const run = promisify(execFile);
const NET = '2001:db8:77:1';
const ADDRESSES = 60;

/** Makes the relay's own network namespace: loopback up, with the test's addresses on it (no DAD: usable at once). */
const NAMESPACE = [
  'unshare',
  '--net',
  'sh',
  '-c',
  `ip link set lo up && for i in $(seq 1 ${ADDRESSES}); do ip -6 addr add ${NET}::$i/128 dev lo nodad || exit 1; done && exec "$@"`,
  'sh',
];

/** In the relay's namespace: SMTP connections from each address (first line of each), and half HTTP requests. */
const CLIENT = `
import json, socket, sys
smtp_port, http_port, n, n_http = (int(a) for a in sys.argv[1:5])
net = sys.argv[5]
def connect_from(i, port):
    s = socket.socket(socket.AF_INET6)
    s.settimeout(10)
    s.bind((f"{net}::{i}", 0))
    s.connect(("::1", port))
    return s
held = []
greetings = []
for i in range(1, n + 1):
    s = connect_from(i, smtp_port)
    line = b""
    while not line.endswith(b"\\n"):
        c = s.recv(1)
        if not c:
            break
        line += c
    greetings.append(line.decode()[:3])
    held.append(s)
http = []
for i in range(1, n_http + 1):
    s = connect_from(i, http_port)
    s.sendall(b"GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n")
    http.append(s)
closed = 0
for s in http:
    try:
        s.settimeout(0.5)
        if s.recv(1) == b"":
            closed += 1
    except socket.timeout:
        pass
    except OSError:
        closed += 1
for s in held + http:
    s.close()
# unknown recipients: five addresses of the network, three refused RCPTs each (smtplib), one session per address
import smtplib
rcpts = []
for i in range(1, 6):
    try:
        c = smtplib.SMTP("::1", smtp_port, source_address=(f"{net}::{i}", 0), timeout=10)
        c.ehlo("client.test")
        c.mail("probe@outside.test")
        for j in range(3):
            rcpts.append(c.rcpt(f"nobody{i}-{j}@v6.test")[0])
        c.quit()
    except smtplib.SMTPServerDisconnected:
        rcpts.append(0)
print(json.dumps({"greetings": greetings, "httpClosed": closed, "rcpts": rcpts}))
`;

interface Seen {
  greetings: string[];
  httpClosed: number;
  /** RCPT reply codes of 3 unknown recipients from each of 5 addresses; 0: the connection was closed. */
  rcpts: number[];
}

let relay: RelayChild | undefined;
let dir: string | undefined;
afterEach(async () => {
  if (relay && relay.proc.exitCode === null) {
    relay.kill('SIGTERM');
    await relay.exited;
  }
  relay = undefined;
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

async function clientsFromOneNetwork(prefixFlags: string[]): Promise<Seen> {
  dir = await tempDir('ipv6-clients');
  // Split with unknown recipients refused: only ann@v6.test exists
  await writeManifests(join(dir, 'manifests'), {
    'd.yaml': dualDomain('v6.test', 2525, 2526, {
      mode: 'Split',
      extraDomain: '  accounts:\n    - {server: old, addresses: [ann@v6.test]}\n',
      extraPolicy: '  split:\n    unknownRecipients: Reject\n',
    }),
  });
  relay = await spawnRelay(
    [
      '--manifests',
      join(dir, 'manifests'),
      '--spool',
      join(dir, 'spool'),
      '--listen',
      '[::1]:0',
      '--http',
      '[::1]:0',
      '--admin',
      '127.0.0.1:0',
      '--greeting-delay',
      '0',
      '--shed-copies-below',
      '0',
      '--max-unknown-recipients-per-ip',
      '10',
      ...prefixFlags,
    ],
    {},
    NAMESPACE,
  );
  const { stdout } = await run(
    'nsenter',
    [
      `--net=/proc/${relay.pid}/ns/net`,
      'python3',
      '-c',
      CLIENT,
      String(relay.smtpPort),
      String(relay.httpPort),
      String(ADDRESSES),
      '20',
      NET,
    ],
    { timeout: 60_000 },
  );
  return JSON.parse(stdout) as Seen;
}

const count = (xs: string[], x: string): number => xs.filter((y) => y === x).length;

describe('per-client limits count an IPv6 client by its /64', () => {
  beforeAll(async () => {
    // a network namespace needs root (CI runs as root); say so rather than fail on a relay that did not start
    await run('unshare', ['--net', 'true']).catch((err: unknown) => {
      throw new Error(`this suite needs root for its network namespace (unshare --net): ${String(err)}`);
    });
  });

  it('60 addresses of one /64 are one client: 50 SMTP sessions greeted, 10 refused; 8 HTTP connections held', async () => {
    const seen = await clientsFromOneNetwork([]);
    expect(seen.greetings).toHaveLength(ADDRESSES);
    expect(count(seen.greetings, '220')).toBe(50);
    expect(count(seen.greetings, '421')).toBe(10);
    expect(seen.greetings.slice(50)).toEqual(new Array<string>(10).fill('421'));
    expect(seen.httpClosed).toBe(12);
    // 10 unknown recipients from the network, then 421 and the connection closed, whichever address asks
    expect(seen.rcpts.slice(0, 10)).toEqual(new Array<number>(10).fill(550));
    expect(seen.rcpts[10]).toBe(421);
    expect(seen.rcpts.slice(11).every((c) => c === 421 || c === 0)).toBe(true);
  });

  it('--client-ipv6-prefix 128: every address is its own client, all 60 greeted', async () => {
    const seen = await clientsFromOneNetwork(['--client-ipv6-prefix', '128']);
    expect(count(seen.greetings, '220')).toBe(ADDRESSES);
    expect(seen.rcpts).toEqual(new Array<number>(15).fill(550));
  });
});
