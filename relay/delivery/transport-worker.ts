// The delivery thread's side of relay/delivery/transport-thread.ts: nodemailer pools, one per open handle, fed the
// transactions the main thread posts; each answer goes back with the transaction's id.
import { parentPort, workerData } from 'node:worker_threads';
import { fromWire, type FromDeliveryThread, type ToDeliveryThread } from './transport-thread.ts';
import {
  nodemailerTransportFactory,
  type NodemailerFactoryOptions,
  type ServerTransport,
} from './transport.ts';

const port = parentPort;
if (port === null) throw new Error('relay/delivery/transport-worker.ts runs as a worker thread only');
const factory = nodemailerTransportFactory(workerData as NodemailerFactoryOptions);
const pools = new Map<number, ServerTransport>();

port.on('message', (m: ToDeliveryThread) => {
  switch (m.t) {
    case 'open':
      pools.get(m.h)?.close();
      pools.set(m.h, factory(m.target));
      return;
    case 'close':
      pools.get(m.h)?.close();
      pools.delete(m.h);
      return;
    case 'send': {
      const pool = pools.get(m.h);
      const answer = (replies: [string, FromDeliveryThread['replies'][number][1]][]): void =>
        port.postMessage({ t: 'done', id: m.id, replies } satisfies FromDeliveryThread);
      if (!pool) {
        answer(
          m.to.map((r) => [r, { kind: 'local', text: 'delivery thread: no transport for this destination' }]),
        );
        return;
      }
      void pool
        .send({
          from: m.from,
          to: m.to,
          raw: fromWire(m.raw),
          ...(m.size !== undefined ? { size: m.size } : {}),
        })
        .then((replies) => answer([...replies]));
      return;
    }
  }
});
