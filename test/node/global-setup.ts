// Starts the real single-node cluster once before the `node` project's suites and removes it after them
// (test/node/cluster.sh up, then purge: every process stopped by PID, host changes undone, state deleted).
// Where the node cannot run, nothing starts: the suites themselves report why (test/node/suite.ts).
// For work on the suites: MAILROUTE_NODE_KEEP=1 leaves the cluster running afterwards, and MAILROUTE_NODE_REUSE=1
// uses a cluster that is already up instead of starting from nothing.
import { clusterScript, kubectl, nodeAvailability } from './harness.ts';

export default async function setup(): Promise<() => Promise<void>> {
  if (!nodeAvailability().available) return async () => {};
  const reuse =
    process.env.MAILROUTE_NODE_REUSE === '1' &&
    (await kubectl(['get', '--raw', '/readyz'], { timeoutMs: 5000 })).code === 0;
  if (!reuse) {
    // A cluster left by an interrupted run is removed first: every run starts from nothing.
    await clusterScript('purge');
    const started = Date.now();
    const out = await clusterScript('up');
    process.stdout.write(`[node] cluster up in ${Math.round((Date.now() - started) / 1000)} s\n${out}`);
  }
  return async () => {
    if (process.env.MAILROUTE_NODE_KEEP === '1') return;
    await clusterScript('purge');
  };
}
