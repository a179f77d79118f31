// The real single-node cluster of the end-to-end suites (test/node/*.test.ts): whether it can run here, starting
// and stopping it (test/node/cluster.sh), and the commands the suites drive it with (kubectl, helm).
//
// The cluster needs root, the node binaries (test/node/build-node.sh), the control plane (build-envtest.sh), the
// image archive (scripts/image.sh --archive ~/.cache/mailroute/node/images/mailroute.tar) and the Debian packages
// containerd, runc, containernetworking-plugins, iptables and buildah. Without them the suites are skipped with a
// loud notice naming what is missing, unless MAILROUTE_REQUIRE_NODE=1 (CI), which makes that a failure.
import { spawnSync } from 'node:child_process';
import { runProcess, type RunResult } from '../support/process.ts';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLUSTER_SCRIPT = join(REPO_ROOT, 'test', 'node', 'cluster.sh');
const K8S_VERSION = '1.34.4';
/** The node's address: on lo, reachable from the host and from every pod (INPUT, never forwarded). */
export const NODE_IP = process.env.MAILROUTE_NODE_IP ?? '10.250.0.1';
const STATE_DIR = process.env.MAILROUTE_NODE_STATE ?? '/var/lib/mailroute-node';
const KUBECONFIG = join(STATE_DIR, 'conf', 'admin.kubeconfig');
/** Folders of the hostPath PersistentVolumes (test/node/provisioner.ts), one per volume: pvc-<claim uid>. */
export const VOLUMES_DIR = join(STATE_DIR, 'volumes');
export const PACKAGE_VERSION = (
  JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }
).version;
/** The image scripts/image.sh builds, as imported into the node's containerd. */
export const IMAGE_REPOSITORY = 'localhost/mailroute';

export const HOW_TO_GET_NODE =
  'as root: apt-get install containerd runc containernetworking-plugins iptables buildah mmdebstrap; ' +
  'bash test/controlplane/build-envtest.sh; bash test/node/build-node.sh; ' +
  'bash scripts/image.sh --base local --archive ~/.cache/mailroute/node/images/mailroute.tar';

function cacheDir(): string {
  return process.env.MAILROUTE_CACHE_DIR ?? join(homedir(), '.cache', 'mailroute');
}

const KUBECTL = join(cacheDir(), 'envtest', K8S_VERSION, 'kubectl');
export const HELM = process.env.MAILROUTE_HELM ?? join(cacheDir(), 'tools', 'helm');
const IMAGE_ARCHIVE = join(cacheDir(), 'node', 'images', 'mailroute.tar');

export type NodeAvailability = { available: true } | { available: false; reason: string };

/** Whether the real node can start here: what is missing, in one sentence. */
export function nodeAvailability(): NodeAvailability {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root');
  const nodeBin = join(cacheDir(), 'node', K8S_VERSION);
  for (const b of [
    'kubelet',
    'kube-controller-manager',
    'kube-scheduler',
    'kube-proxy',
    'coredns',
    'pause',
    'crictl',
  ])
    if (!existsSync(join(nodeBin, b))) missing.push(join(nodeBin, b));
  const cp = process.env.KUBEBUILDER_ASSETS ?? join(cacheDir(), 'envtest', K8S_VERSION);
  for (const b of [join(cp, 'kube-apiserver'), join(cp, 'etcd'), KUBECTL, HELM])
    if (!existsSync(b)) missing.push(b);
  if (!existsSync(IMAGE_ARCHIVE)) missing.push(IMAGE_ARCHIVE);
  for (const cmd of ['containerd', 'runc', 'ctr', 'buildah', 'iptables'])
    if (spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0) missing.push(cmd);
  if (!existsSync('/usr/lib/cni/bridge')) missing.push('/usr/lib/cni/bridge');
  return missing.length === 0
    ? { available: true }
    : { available: false, reason: `missing ${missing.join(', ')}` };
}

/** A command against the node cluster (KUBECONFIG set); never throws on a non-zero exit. */
export function run(
  cmd: string,
  args: readonly string[],
  opts: { input?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return runProcess(cmd, args, {
    env: { KUBECONFIG },
    timeoutMs: opts.timeoutMs ?? 300_000,
    ...(opts.input !== undefined ? { stdin: opts.input } : {}),
  });
}

/** kubectl against the node cluster. */
export function kubectl(
  args: readonly string[],
  opts: { input?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return run(KUBECTL, args, opts);
}

/** kubectl that must succeed: returns stdout, or throws with the command and its stderr. */
export async function kubectlOk(
  args: readonly string[],
  opts: { input?: string; timeoutMs?: number } = {},
): Promise<string> {
  const r = await kubectl(args, opts);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** helm against the node cluster, which must succeed. */
export async function helmOk(args: readonly string[], timeoutMs = 600_000): Promise<string> {
  const r = await run(HELM, args, { timeoutMs });
  if (r.code !== 0)
    throw new Error(`helm ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}\n${r.stdout}`);
  return r.stdout;
}

/** cluster.sh up|down|purge; throws with the script's output when it fails. */
export async function clusterScript(action: 'up' | 'down' | 'purge'): Promise<string> {
  const r = await run('bash', [CLUSTER_SCRIPT, action], { timeoutMs: 600_000 });
  if (r.code !== 0)
    throw new Error(`test/node/cluster.sh ${action} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** ctr against the node's containerd (namespace k8s.io), which must succeed. */
export async function ctrOk(args: readonly string[]): Promise<string> {
  const sock = join(process.env.MAILROUTE_NODE_RUN ?? '/run/mailroute-node', 'containerd.sock');
  const r = await run('ctr', ['--address', sock, '-n', 'k8s.io', ...args], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`ctr ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}
