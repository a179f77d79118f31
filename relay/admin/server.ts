// The queue admin HTTP API, served on --admin (127.0.0.1:9091 by default: keep it on loopback). It trusts the
// loopback interface and the spool folder: requests from a browser (Origin, Sec-Fetch-Site), with a Host that is not
// this listener (DNS rebinding), and state changes without the token of <spool>/admin.token are refused
// (relay/admin/guard.ts; docs/relay.md "Admin API").
//
// Exports (called by the relay wiring):
//   startAdminServer(opts: { listen: { host; port }; spool; engine; logger; tokenFile; maxList? })
//     : Promise<{ address: { host; port }; tokenFile; close(): Promise<void> }>
//
// Routes (JSON in and out; shapes in relay/admin/view.ts):
//   GET    /queue[?limit=N]   QueueListView: the oldest N messages (default and max 1000: 400 above) with per-leg state
//   GET    /queue/stats       DeliveryStats of the engine
//   GET    /queue/:id         MessageView of one message, 404 when it is not queued
//   POST   /queue/flush       retry every deferred leg now -> 202 { flushed: true, messages }
//   POST   /queue/reroute     re-plan the open legs of every queued message with the current routing table
//                             -> 200 { messages, rerouted, legs, unchanged }
//   POST   /queue/:id/reroute the same for one message -> 200 { id, changed: [...], unchanged: [...] } or 404
//   DELETE /queue/:id         drop a message without delivering it (no DSN) -> 200 { deleted: id } or 404
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { httpServerOptions, limitConnections } from '../../lib/http-limits.ts';
import { listenOn } from '../../lib/listen.ts';
import { clip } from '../../lib/one-line.ts';
import { parityView, type ParityReport } from '../../contract/relay-parity.ts';
import type { DeliveryEngine, DeliveryStats } from '../delivery/engine.ts';
import type { RerouteResult } from '../delivery/reroute.ts';
import type { ServerLookup } from '../delivery/server-lookup.ts';
import { isQueueId } from '../spool/spool.ts';
import type { LegState, Spool } from '../spool/types.ts';
import { guardAdminRequest } from './guard.ts';
import { startAdminToken } from './token.ts';
import { messageView, type MessageView, type QueueListView } from './view.ts';

/** The most messages one GET /queue returns (a page is about 1 KiB per message with a few recipients). */
const MAX_PAGE = 1000;
/**
 * The most bytes of message views one GET /queue returns (at least one message is listed): a message of 1,000
 * recipients has a view of about 1.2 MB, and a page of them (1.1 GiB) passed V8's longest string after every view
 * was built, or the container's memory limit first.
 */
const MAX_PAGE_BYTES = 8 * 1024 * 1024;

export interface AdminServerOptions {
  listen: { host: string; port: number };
  spool: Pick<Spool, 'list' | 'load'>;
  engine: Pick<DeliveryEngine, 'flush' | 'remove' | 'rerouteAll'> & {
    reroute(id: string): Promise<Pick<RerouteResult, 'changed' | 'unchanged'> | undefined>;
    /** Synchronous in one process; the workers' primary (relay/workers.ts) asks them. */
    stats(): DeliveryStats | Promise<DeliveryStats>;
  };
  logger: Logger;
  /** Where to write the token that POST and DELETE need (a new one at every start): <spool>/admin.token. */
  tokenFile: string;
  /** Where a leg would be delivered now (the current routing table); views show that address and why a leg is held. */
  lookup?: (leg: LegState) => ServerLookup;
  /** Default number of messages GET /queue lists (at most MAX_PAGE). */
  maxList?: number;
  /** The most bytes of message views in one GET /queue (default MAX_PAGE_BYTES; tests set less). */
  maxPageBytes?: number;
  /** The parity counters (relay/telemetry/parity.ts), shown by GET /queue/stats. */
  parity?: () => ParityReport;
}

export interface AdminServer {
  address: { host: string; port: number };
  /** The token file ('' for a worker's embedded stand-in). */
  tokenFile: string;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const data = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(data),
  });
  res.end(data);
}

export async function startAdminServer(opts: AdminServerOptions): Promise<AdminServer> {
  const { spool, engine } = opts;
  const log = opts.logger;
  const defaultLimit = Math.min(opts.maxList ?? MAX_PAGE, MAX_PAGE);
  const maxPageBytes = opts.maxPageBytes ?? MAX_PAGE_BYTES;
  const token = await startAdminToken(opts.tokenFile, (message) => log.warn(message));

  const list = async (limit: number): Promise<QueueListView> => {
    const ids = await spool.list();
    const messages: MessageView[] = [];
    let skipped = 0;
    let bytes = 0;
    let full = false;
    for (const id of ids.slice(0, limit)) {
      const r = await spool.load(id);
      if (!r.ok) {
        skipped++;
        continue;
      }
      const view = messageView(r.state, opts.lookup);
      const size = JSON.stringify(view).length;
      if (messages.length > 0 && bytes + size > maxPageBytes) {
        full = true;
        break;
      }
      bytes += size;
      messages.push(view);
    }
    return { total: ids.length, truncated: full || ids.length > limit, messages, skipped };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const allowed = guardAdminRequest(
      { method: req.method ?? 'GET', headers: req.headers },
      { listenHost: opts.listen.host, token },
    );
    if (!allowed.ok) {
      log.warn(
        {
          client: req.socket.remoteAddress,
          method: clip(req.method ?? '', 16),
          url: clip(req.url ?? '', 256),
          status: allowed.status,
        },
        `admin: refused: ${allowed.error}`,
      );
      req.resume();
      return send(res, allowed.status, { error: allowed.error });
    }
    const url = new URL(req.url ?? '/', 'http://admin');
    const parts = url.pathname.split('/').filter((p) => p !== '');
    const method = req.method ?? 'GET';
    if (parts[0] !== 'queue' || parts.length > 3 || (parts.length === 3 && parts[2] !== 'reroute')) {
      return send(res, 404, { error: `no route ${method} ${url.pathname}; see GET /queue` });
    }
    if (parts.length === 1) {
      if (method !== 'GET') return send(res, 405, { error: `${method} /queue: use GET` });
      const raw = url.searchParams.get('limit');
      const limit = raw === null ? defaultLimit : Number(raw);
      if (!Number.isInteger(limit) || limit < 0 || limit > MAX_PAGE) {
        return send(res, 400, {
          error: `limit: expected an integer 0..${MAX_PAGE} (the largest page), got ${JSON.stringify(raw)}`,
        });
      }
      return send(res, 200, await list(limit));
    }
    const arg = parts[1]!;
    if (arg === 'reroute' && parts.length === 2) {
      if (method !== 'POST') return send(res, 405, { error: `${method} /queue/reroute: use POST` });
      const r = await engine.rerouteAll();
      log.info({ client: req.socket.remoteAddress, ...r }, 'admin: reroute all');
      return send(res, 200, r);
    }
    if (parts.length === 3) {
      if (!isQueueId(arg))
        return send(res, 400, { error: `queue id: ${JSON.stringify(arg)} is not a queue id` });
      if (method !== 'POST') return send(res, 405, { error: `${method} /queue/${arg}/reroute: use POST` });
      const r = await engine.reroute(arg);
      log.info(
        { queueId: arg, client: req.socket.remoteAddress, changed: r?.changed.length ?? null },
        'admin: reroute',
      );
      if (r === undefined) return send(res, 404, { error: `${arg}: not in the queue` });
      return send(res, 200, { id: arg, changed: r.changed, unchanged: r.unchanged });
    }
    if (arg === 'flush') {
      if (method !== 'POST') return send(res, 405, { error: `${method} /queue/flush: use POST` });
      const before = await engine.stats();
      engine.flush();
      log.info({ client: req.socket.remoteAddress }, 'admin: flush');
      return send(res, 202, { flushed: true, messages: before.messages });
    }
    if (arg === 'stats') {
      if (method !== 'GET') return send(res, 405, { error: `${method} /queue/stats: use GET` });
      const parity = opts.parity?.();
      return send(res, 200, {
        ...(await engine.stats()),
        ...(parity !== undefined ? { parity: parityView(parity) } : {}),
      });
    }
    if (!isQueueId(arg))
      return send(res, 400, { error: `queue id: ${JSON.stringify(arg)} is not a queue id` });
    if (method === 'GET') {
      const r = await spool.load(arg);
      if (!r.ok)
        return send(res, 404, { error: `${arg}: ${r.reason === 'missing' ? 'not in the queue' : r.error}` });
      return send(res, 200, messageView(r.state, opts.lookup));
    }
    if (method === 'DELETE') {
      const existed = await engine.remove(arg);
      log.warn({ queueId: arg, client: req.socket.remoteAddress, existed }, 'admin: delete');
      return existed
        ? send(res, 200, { deleted: arg })
        : send(res, 404, { error: `${arg}: not in the queue` });
    }
    return send(res, 405, { error: `${method} /queue/${arg}: use GET or DELETE` });
  };

  const server = createServer(httpServerOptions(), (req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err }, 'admin: request failed');
      if (!res.headersSent) send(res, 500, { error: err instanceof Error ? err.message : String(err) });
      else res.destroy();
    });
  });
  limitConnections(server);
  // once listening, an accept that fails (EMFILE under a connection flood) is logged, never fatal (lib/listen.ts)
  const a = await listenOn(server, opts.listen.port, opts.listen.host, (err) =>
    log.warn({ err }, 'admin: listener error'),
  );
  log.info({ host: a.host, port: a.port }, 'admin API listening');
  return {
    address: { host: a.host, port: a.port },
    tokenFile: opts.tokenFile,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
