// Loopback ports and raw requests for tests and benchmarks.
import { request as httpRequest } from 'node:http';
import { connect, createServer } from 'node:net';

/**
 * Where freePort() hands out ports: 12,000-29,999, one block of 500 per test worker. Below the kernel's ephemeral range
 * (net.ipv4.ip_local_port_range, 32,768-60,999 by default), from which listen(0) and the source port of every outgoing
 * connection are taken: a port handed out here stays free until whoever got it binds it, even while other tests open
 * connections. Below 30,000, so that Kubernetes NodePorts (30,000-32,767) are not in it either, and above the
 * kubelet's and the control plane's ports (10,248-10,259) that the node suites start.
 */
export const PORT_RANGE = { first: 12_000, blockSize: 500, blocks: 36 } as const;

/** The ports of one worker's block: the Nth block, wrapping around. */
export function portBlock(worker: number): { first: number; last: number } {
  const { first, blockSize, blocks } = PORT_RANGE;
  const b = ((Math.trunc(worker) % blocks) + blocks) % blocks;
  return { first: first + b * blockSize, last: first + b * blockSize + blockSize - 1 };
}

/** vitest's worker number (unique among the workers running at once), else the process id (benchmarks, tools). */
function workerNumber(): number {
  const id = Number(process.env['VITEST_POOL_ID']);
  return Number.isInteger(id) && id > 0 ? id : process.pid;
}

let nextPort: number | undefined;

/**
 * A free loopback TCP port: the next one of this worker's block that a bind on 127.0.0.1 accepts (checked by binding
 * and closing it), starting at a random place in the block.
 */
export async function freePort(): Promise<number> {
  const { first, last } = portBlock(workerNumber());
  let port: number = nextPort ?? first + Math.floor(Math.random() * (last - first + 1));
  for (let tries = 0; tries <= last - first; tries++) {
    nextPort = port >= last ? first : port + 1;
    if (await canBind(port)) return port;
    port = nextPort;
  }
  throw new Error(`freePort: every port of ${first}-${last} is in use`);
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** One HTTP request with exactly these headers (fetch would not let a test set Host). */
export function rawHttp(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, method, path, headers: { host: `127.0.0.1:${port}`, ...headers } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** true when something accepts a TCP connection on 127.0.0.1:port (closed at once). */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
