// A real Kubernetes control plane (etcd + kube-apiserver) for tests, started the way controller-runtime's envtest
// starts it (pkg/internal/testing/controlplane): free loopback ports, a temp data dir, generated certificates, a
// client certificate in system:masters, and a kubeconfig written to disk.
//
// Binaries come from KUBEBUILDER_ASSETS when it is set, else from ~/.cache/mailroute/envtest/<version>/ (built by
// `npm run envtest`, i.e. test/controlplane/build-envtest.sh). When they are missing and a Go toolchain exists, the
// build script is run; otherwise startControlPlane throws ControlPlaneUnavailableError.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { homedir, tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import { freePort } from '../support/net.ts';
import { waitFor } from '../support/wait.ts';

const DEFAULT_K8S_VERSION = '1.34.4';
const HERE = fileURLToPath(new URL('.', import.meta.url));
const BUILD_SCRIPT = join(HERE, 'build-envtest.sh');
export const HOW_TO_GET_BINARIES =
  'run `npm run envtest` (builds kube-apiserver, kubectl and etcd from Go modules into ~/.cache/mailroute/envtest/<version>/, needs Go) ' +
  'or set KUBEBUILDER_ASSETS to a directory holding kube-apiserver, etcd and kubectl';

/** Thrown (and returned by findBinaries) when no control plane can be started on this machine. */
export class ControlPlaneUnavailableError extends Error {
  override readonly name = 'ControlPlaneUnavailableError';
  readonly unavailable = true as const;
}

interface Binaries {
  dir: string;
  kubeApiServer: string;
  etcd: string;
  /** kubectl is optional in KUBEBUILDER_ASSETS; the kubectl() helper throws without it. */
  kubectl: string | undefined;
}

export type BinariesLookup =
  { ok: true; binaries: Binaries } | { ok: false; reason: string; canBuild: boolean };

function envtestCacheDir(version = DEFAULT_K8S_VERSION): string {
  const cache = process.env.MAILROUTE_CACHE_DIR ?? join(homedir(), '.cache', 'mailroute');
  return join(cache, 'envtest', version);
}

function hasGo(): boolean {
  const path = process.env.PATH ?? '';
  return path.split(delimiter).some((d) => d !== '' && existsSync(join(d, 'go')));
}

/** Synchronous lookup (suites decide skip-or-run at collection time). Never builds. */
export function findBinaries(version = DEFAULT_K8S_VERSION): BinariesLookup {
  const assets = process.env.KUBEBUILDER_ASSETS;
  const dir = assets !== undefined && assets !== '' ? resolve(assets) : envtestCacheDir(version);
  const kubeApiServer = join(dir, 'kube-apiserver');
  const etcd = join(dir, 'etcd');
  const kubectl = join(dir, 'kubectl');
  const missing = [kubeApiServer, etcd].filter((p) => !existsSync(p));
  if (missing.length === 0) {
    return {
      ok: true,
      binaries: { dir, kubeApiServer, etcd, kubectl: existsSync(kubectl) ? kubectl : undefined },
    };
  }
  const source = assets !== undefined && assets !== '' ? 'KUBEBUILDER_ASSETS' : 'the envtest cache';
  return {
    ok: false,
    canBuild: (assets === undefined || assets === '') && hasGo(),
    reason: `no control plane binaries: missing ${missing.join(', ')} (from ${source}); ${HOW_TO_GET_BINARIES}`,
  };
}

/** Finds the binaries, building them with build-envtest.sh when they are missing and `go` exists. */
function ensureBinaries(version = DEFAULT_K8S_VERSION): Binaries {
  const found = findBinaries(version);
  if (found.ok) return found.binaries;
  if (!found.canBuild) throw new ControlPlaneUnavailableError(found.reason);
  process.stderr.write(
    `[controlplane] binaries missing, running ${BUILD_SCRIPT} (several minutes, once per machine)\n`,
  );
  const r = spawnSync('bash', [BUILD_SCRIPT], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, MAILROUTE_K8S_VERSION: version },
  });
  const again = findBinaries(version);
  if (!again.ok) {
    throw new ControlPlaneUnavailableError(
      `build-envtest.sh exited with ${String(r.status)}; ${again.reason}`,
    );
  }
  return again.binaries;
}

interface KubectlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ControlPlane {
  readonly kubeconfigPath: string;
  readonly kubeconfig: KubeConfig;
  /** https://127.0.0.1:<port> */
  readonly server: string;
  readonly dir: string;
  readonly binaries: Binaries;
  /** Runs the built kubectl against this control plane. Never throws on a non-zero exit: check `code`. */
  kubectl(args: string[], opts?: { stdin?: string; timeoutMs?: number }): Promise<KubectlResult>;
  /** Stops kube-apiserver (SIGTERM, then SIGKILL) and starts it again on the same port with the same etcd. */
  restartApiServer(): Promise<void>;
  /** Only stops kube-apiserver (tests that need an outage window). startApiServer() brings it back. */
  stopApiServer(): Promise<void>;
  startApiServer(): Promise<void>;
  stop(): Promise<void>;
}

export interface ControlPlaneOptions {
  version?: string;
  /** Deadline for etcd + kube-apiserver to become ready. Default 90 s. */
  startTimeoutMs?: number;
  /** Extra kube-apiserver flags (`--name=value`). */
  apiServerFlags?: string[];
  /** Keep the temp dir after stop() (debugging). Also MAILROUTE_ENVTEST_KEEP=1. */
  keepDir?: boolean;
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.error !== undefined)
    throw new ControlPlaneUnavailableError(`openssl not runnable: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr}`);
}

interface Certs {
  caCrt: string;
  caKey: string;
  clientCrt: string;
  clientKey: string;
  saKey: string;
  saPub: string;
  certDir: string;
}

/** CA, serving cert (127.0.0.1/localhost), admin client cert (O=system:masters), service-account keypair. */
function generateCerts(dir: string): Certs {
  const certDir = join(dir, 'certs');
  spawnSync('mkdir', ['-p', certDir]);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=mailroute-envtest-ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature'], certDir); // prettier-ignore
  openssl(['req', '-x509', ...ec, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-keyout', 'apiserver.key', '-out', 'apiserver.crt', '-days', '2', '-subj', '/CN=kube-apiserver', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc', '-addext', 'extendedKeyUsage=serverAuth', '-addext', 'basicConstraints=critical,CA:FALSE'], certDir); // prettier-ignore
  openssl(['req', '-x509', ...ec, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-keyout', 'client.key', '-out', 'client.crt', '-days', '2', '-subj', '/O=system:masters/CN=admin', '-addext', 'extendedKeyUsage=clientAuth', '-addext', 'basicConstraints=critical,CA:FALSE'], certDir); // prettier-ignore
  openssl(
    ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', 'sa.key'],
    certDir,
  );
  openssl(['pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub'], certDir);
  return {
    certDir,
    caCrt: join(certDir, 'ca.crt'),
    caKey: join(certDir, 'ca.key'),
    clientCrt: join(certDir, 'client.crt'),
    clientKey: join(certDir, 'client.key'),
    saKey: join(certDir, 'sa.key'),
    saPub: join(certDir, 'sa.pub'),
  };
}

function kubeconfigYaml(server: string, certs: Certs): string {
  const b64 = (p: string): string => readFileSync(p).toString('base64');
  return [
    'apiVersion: v1',
    'kind: Config',
    'clusters:',
    '- name: envtest',
    '  cluster:',
    `    server: ${server}`,
    `    certificate-authority-data: ${b64(certs.caCrt)}`,
    'users:',
    '- name: envtest-admin',
    '  user:',
    `    client-certificate-data: ${b64(certs.clientCrt)}`,
    `    client-key-data: ${b64(certs.clientKey)}`,
    'contexts:',
    '- name: envtest',
    '  context: {cluster: envtest, user: envtest-admin, namespace: default}',
    'current-context: envtest',
    '',
  ].join('\n');
}

function tail(path: string, lines = 30): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function httpsGet(
  url: string,
  certs: Certs,
  timeoutMs = 2000,
): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    const req = request(
      url,
      {
        ca: readFileSync(certs.caCrt),
        cert: readFileSync(certs.clientCrt),
        key: readFileSync(certs.clientKey),
        timeout: timeoutMs,
      },
      (r) => {
        let body = '';
        r.setEncoding('utf8');
        r.on('data', (c: string) => (body += c));
        r.on('end', () => res({ status: r.statusCode ?? 0, body }));
        r.on('error', rej);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', rej);
    req.end();
  });
}

/** Waits for a process to become ready; the timeout error carries the tail of its log. */
async function readyOrLog(
  what: string,
  timeoutMs: number,
  check: () => Promise<boolean>,
  log: () => string,
): Promise<void> {
  await waitFor(check, { what, timeoutMs, intervalMs: 50 }).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}\n${log()}`);
  });
}

async function stopProcess(p: ChildProcess | undefined, graceMs = 5000): Promise<void> {
  if (p === undefined || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill('SIGTERM');
  const timer = setTimeout(() => p.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

// Children are killed when the test process exits, even if a suite forgot stop().
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(p: ChildProcess): void {
  live.add(p);
  p.once('exit', () => live.delete(p));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
}

export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const binaries = ensureBinaries(opts.version);
  const startTimeoutMs = opts.startTimeoutMs ?? 90_000;
  const dir = mkdtempSync(join(tmpdir(), 'mailroute-envtest-'));
  const certs = generateCerts(dir);
  const [etcdClientPort, etcdPeerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
  const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;
  const server = `https://127.0.0.1:${apiPort}`;

  const etcdLog = join(dir, 'etcd.log');
  const apiLog = join(dir, 'kube-apiserver.log');
  const spawnLogged = (bin: string, args: string[], log: string): ChildProcess => {
    const fd = openSync(log, 'a');
    const p = spawn(bin, args, { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    track(p);
    return p;
  };

  const etcd = spawnLogged(
    binaries.etcd,
    [
      `--data-dir=${join(dir, 'etcd-data')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-cluster=default=http://127.0.0.1:${etcdPeerPort}`,
      '--unsafe-no-fsync=true',
      '--log-level=warn',
    ],
    etcdLog,
  );

  const apiArgs = [
    `--etcd-servers=${etcdUrl}`,
    `--cert-dir=${certs.certDir}`,
    `--tls-cert-file=${join(certs.certDir, 'apiserver.crt')}`,
    `--tls-private-key-file=${join(certs.certDir, 'apiserver.key')}`,
    `--secure-port=${apiPort}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    '--service-cluster-ip-range=10.0.0.0/24',
    '--authorization-mode=RBAC',
    `--client-ca-file=${certs.caCrt}`,
    `--service-account-issuer=${server}`,
    `--service-account-key-file=${certs.saPub}`,
    `--service-account-signing-key-file=${certs.saKey}`,
    '--allow-privileged=true',
    '--disable-admission-plugins=ServiceAccount',
    '--storage-backend=etcd3',
    ...(opts.apiServerFlags ?? []),
  ];
  let api: ChildProcess | undefined;
  let stopped = false;

  const waitEtcd = async (): Promise<void> =>
    readyOrLog(
      'etcd',
      startTimeoutMs,
      async () => {
        if (etcd.exitCode !== null) throw new Error('etcd exited');
        const r = await fetch(`${etcdUrl}/health`);
        return r.ok;
      },
      () => tail(etcdLog),
    );

  const startApi = async (): Promise<void> => {
    api = spawnLogged(binaries.kubeApiServer, apiArgs, apiLog);
    const p = api;
    await readyOrLog(
      'kube-apiserver /readyz',
      startTimeoutMs,
      async () => {
        if (p.exitCode !== null) throw new Error(`kube-apiserver exited with ${p.exitCode}`);
        return (await httpsGet(`${server}/readyz`, certs)).status === 200;
      },
      () => `kube-apiserver log (${apiLog}):\n${tail(apiLog)}`,
    );
  };

  try {
    await waitEtcd();
    await startApi();
  } catch (err) {
    await stopProcess(api);
    await stopProcess(etcd);
    throw err;
  }

  const kubeconfigPath = join(dir, 'kubeconfig');
  writeFileSync(kubeconfigPath, kubeconfigYaml(server, certs), { mode: 0o600 });
  const kubeconfig = new KubeConfig();
  kubeconfig.loadFromFile(kubeconfigPath);

  const cp: ControlPlane = {
    kubeconfigPath,
    kubeconfig,
    server,
    dir,
    binaries,
    async kubectl(args, kopts = {}) {
      const bin = binaries.kubectl;
      if (bin === undefined) throw new ControlPlaneUnavailableError(`kubectl not found in ${binaries.dir}`);
      return new Promise<KubectlResult>((res, rej) => {
        const p = spawn(bin, [`--kubeconfig=${kubeconfigPath}`, ...args], {
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        p.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
        p.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
        const timer = setTimeout(() => p.kill('SIGKILL'), kopts.timeoutMs ?? 60_000);
        p.on('error', rej);
        p.on('close', (code) => {
          clearTimeout(timer);
          res({ code: code ?? -1, stdout, stderr });
        });
        // A tool may exit without reading its input (EPIPE): its exit code and output tell what happened.
        p.stdin.on('error', (err: NodeJS.ErrnoException) => {
          if (err.code !== 'EPIPE') rej(err);
        });
        p.stdin.end(kopts.stdin ?? '');
      });
    },
    async stopApiServer() {
      await stopProcess(api);
    },
    async startApiServer() {
      if (api !== undefined && api.exitCode === null && api.signalCode === null) return;
      await startApi();
    },
    async restartApiServer() {
      await stopProcess(api);
      await startApi();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await stopProcess(api);
      await stopProcess(etcd);
      if (!(opts.keepDir === true || process.env.MAILROUTE_ENVTEST_KEEP === '1')) {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
  return cp;
}
