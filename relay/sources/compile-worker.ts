// Runs in a worker_threads Worker: reads and compiles a --manifests folder off the SMTP event loop, so the relay keeps
// answering while a large table compiles (a 50 MB manifest blocked the event loop for 37.7 s before). The worker
// stays up between loads (its modules are loaded once); each request { id, dir, limits } gets { id, outcome } (plain
// data, a Map of credentials and a Date: structured-clone safe).
import { parentPort } from 'node:worker_threads';
import type { ManifestLimits } from '../../lib/manifests.ts';
import { loadManifestsDir } from './manifests.ts';

parentPort?.on('message', (req: { id: number; dir: string; limits: ManifestLimits }) => {
  void loadManifestsDir(req.dir, undefined, req.limits).then(
    (outcome) => parentPort?.postMessage({ id: req.id, outcome }),
    (err: unknown) =>
      parentPort?.postMessage({
        id: req.id,
        outcome: { ok: false, errors: [`${req.dir}: ${err instanceof Error ? err.message : String(err)}`] },
      }),
  );
});
