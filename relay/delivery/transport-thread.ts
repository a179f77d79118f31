// The outbound SMTP transport on a second thread: the engine stays on the main thread and hands each SMTP
// transaction (envelope and body reference) to a worker thread that owns the nodemailer pools and their sockets.
// One process then uses both cores: the main thread accepts and spools mail, the delivery thread talks to the
// destinations (docs/perf.md, "The delivery thread").
//
// Exports:
//   threadTransportFactory(opts): TransportFactory  - the same seam as nodemailerTransportFactory, across a thread.
//   replyOfThreadFailure(why): the reply every pending transaction gets when the thread dies (retried, never bounced).
//
// The thread is started on first use and restarted on the next send after it died; a transaction in flight when it
// died gets a 'local' reply for each recipient, which the engine retries (the server may have received it: at least
// once, as after a dropped connection). The thread keeps the process alive only while a transaction is in flight.
import { Worker } from 'node:worker_threads';
import type { AttemptReply } from './outcome.ts';
import { assertNodemailerPatched } from './patched.ts';
import type {
  NodemailerFactoryOptions,
  SendRequest,
  ServerTarget,
  ServerTransport,
  TransportFactory,
} from './transport.ts';
import type { MessageBody } from '../spool/types.ts';

/** What the main thread posts to the delivery thread. */
export type ToDeliveryThread =
  | { t: 'open'; h: number; target: ServerTarget }
  | { t: 'send'; h: number; id: number; from: string; to: string[]; raw: WireBody; size: number | undefined }
  | { t: 'close'; h: number };

/** What the delivery thread posts back: one reply per recipient of transaction id. */
export type FromDeliveryThread = { t: 'done'; id: number; replies: [string, AttemptReply][] };

/** A body as it crosses the thread boundary: its bytes (transferred) or its file. */
export type WireBody = ArrayBuffer | { path: string; size: number; start?: number };

export function replyOfThreadFailure(why: string): AttemptReply {
  return { kind: 'local', text: `delivery thread: ${why}` };
}

/** The body's bytes in an ArrayBuffer of their own (transferable without copying anything else along). */
function toWire(raw: MessageBody): { body: WireBody; transfer: ArrayBuffer[] } {
  if (!Buffer.isBuffer(raw)) return { body: raw, transfer: [] };
  const ab = new ArrayBuffer(raw.length);
  new Uint8Array(ab).set(raw);
  return { body: ab, transfer: [ab] };
}

export function fromWire(body: WireBody): MessageBody {
  return body instanceof ArrayBuffer ? Buffer.from(body) : body;
}

interface Pending {
  to: string[];
  resolve: (r: Map<string, AttemptReply>) => void;
}

export function threadTransportFactory(opts: NodemailerFactoryOptions): TransportFactory {
  assertNodemailerPatched();
  const workerData: NodemailerFactoryOptions = { ...opts };
  let worker: Worker | undefined;
  let opened = new Set<number>();
  const targets = new Map<number, ServerTarget>();
  const pending = new Map<number, Pending>();
  let nextHandle = 1;
  let nextId = 1;

  const failAll = (why: string): void => {
    const reply = replyOfThreadFailure(why);
    for (const p of pending.values()) p.resolve(new Map(p.to.map((r) => [r, reply])));
    pending.clear();
  };

  const start = (): Worker => {
    const w = new Worker(new URL('./transport-worker.ts', import.meta.url), { workerData });
    w.unref();
    w.on('message', (m: FromDeliveryThread) => {
      const p = pending.get(m.id);
      if (!p) return;
      pending.delete(m.id);
      if (pending.size === 0) w.unref();
      p.resolve(new Map(m.replies));
    });
    const gone = (why: string): void => {
      if (worker !== w) return;
      worker = undefined;
      opened = new Set();
      failAll(why);
    };
    w.on('error', (err: Error) => gone(`stopped: ${err.message}`));
    w.on('exit', (code) => gone(`exited with code ${code}`));
    return w;
  };

  const post = (m: ToDeliveryThread, transfer: ArrayBuffer[] = []): Worker => {
    worker ??= start();
    worker.postMessage(m, transfer);
    return worker;
  };

  return (target: ServerTarget): ServerTransport => {
    const h = nextHandle++;
    targets.set(h, target);
    return {
      send(req: SendRequest): Promise<Map<string, AttemptReply>> {
        return new Promise((resolve) => {
          if (!targets.has(h)) {
            const reply = replyOfThreadFailure('transport closed');
            resolve(new Map(req.to.map((r) => [r, reply])));
            return;
          }
          if (!opened.has(h) || worker === undefined) {
            post({ t: 'open', h, target });
            opened.add(h);
          }
          const id = nextId++;
          const { body, transfer } = toWire(req.raw);
          pending.set(id, { to: req.to, resolve });
          const w = post(
            { t: 'send', h, id, from: req.from, to: req.to, raw: body, size: req.size },
            transfer,
          );
          w.ref();
        });
      },
      close(): void {
        if (!targets.delete(h)) return;
        if (worker !== undefined && opened.delete(h))
          worker.postMessage({ t: 'close', h } satisfies ToDeliveryThread);
      },
    };
  };
}
