// A hostPath volume provisioner for the single-node test cluster (test/node/cluster.sh starts it on the host).
// Every PersistentVolumeClaim of its StorageClass gets a folder under --root and a PersistentVolume bound to the
// claim; a Released volume (its claim deleted, reclaimPolicy Delete) loses its folder and its PersistentVolume.
// The folders are created by root with mode 0755, as hostPath and local PersistentVolumes are: they ignore the
// pod's fsGroup, which is the case the chart's relay.spool.volumePermissions handles.
//
//   node test/node/provisioner.ts --kubeconfig F --root DIR --node NAME --class SC --provisioner NAME
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CoreV1Api, KubeConfig, type V1PersistentVolume } from '@kubernetes/client-node';

const { values } = parseArgs({
  options: {
    kubeconfig: { type: 'string' },
    root: { type: 'string' },
    node: { type: 'string' },
    class: { type: 'string' },
    provisioner: { type: 'string' },
    'interval-ms': { type: 'string', default: '500' },
  },
});
for (const k of ['kubeconfig', 'root', 'node', 'class', 'provisioner'] as const) {
  if (values[k] === undefined) throw new Error(`provisioner: --${k} is required`);
}
const root = values.root!;
const node = values.node!;
const className = values.class!;
const provisioner = values.provisioner!;
const interval = Number(values['interval-ms']);

const kc = new KubeConfig();
kc.loadFromFile(values.kubeconfig!);
const core = kc.makeApiClient(CoreV1Api);

function log(msg: string): void {
  process.stdout.write(`${new Date().toISOString()} ${msg}\n`);
}

function conflict(err: unknown): boolean {
  return (err as { code?: number } | null)?.code === 409;
}

async function provision(): Promise<void> {
  const claims = await core.listPersistentVolumeClaimForAllNamespaces();
  for (const pvc of claims.items) {
    const uid = pvc.metadata?.uid;
    if (pvc.spec?.storageClassName !== className || pvc.status?.phase !== 'Pending' || pvc.spec.volumeName)
      continue;
    if (uid === undefined) continue;
    const name = `pvc-${uid}`;
    const path = join(root, name);
    await mkdir(path, { recursive: true, mode: 0o755 });
    const pv: V1PersistentVolume = {
      metadata: { name, annotations: { 'pv.kubernetes.io/provisioned-by': provisioner } },
      spec: {
        storageClassName: className,
        capacity: { storage: pvc.spec.resources?.requests?.storage ?? '1Gi' },
        accessModes: pvc.spec.accessModes ?? ['ReadWriteOnce'],
        persistentVolumeReclaimPolicy: 'Delete',
        volumeMode: 'Filesystem',
        hostPath: { path, type: 'Directory' },
        claimRef: {
          apiVersion: 'v1',
          kind: 'PersistentVolumeClaim',
          namespace: pvc.metadata?.namespace ?? 'default',
          name: pvc.metadata?.name ?? '',
          uid,
        },
        nodeAffinity: {
          required: {
            nodeSelectorTerms: [
              { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: [node] }] },
            ],
          },
        },
      },
    };
    try {
      await core.createPersistentVolume({ body: pv });
      log(`provisioned ${name} at ${path} for ${pv.spec!.claimRef!.namespace}/${pv.spec!.claimRef!.name}`);
    } catch (err) {
      if (!conflict(err)) throw err;
    }
  }
}

async function reclaim(): Promise<void> {
  const volumes = await core.listPersistentVolume();
  for (const pv of volumes.items) {
    const name = pv.metadata?.name;
    if (name === undefined || pv.metadata?.annotations?.['pv.kubernetes.io/provisioned-by'] !== provisioner)
      continue;
    if (pv.status?.phase !== 'Released' || pv.spec?.persistentVolumeReclaimPolicy !== 'Delete') continue;
    await rm(join(root, name), { recursive: true, force: true });
    await core.deletePersistentVolume({ name }).catch((err: unknown) => {
      if ((err as { code?: number } | null)?.code !== 404) throw err;
    });
    log(`deleted ${name}`);
  }
}

let stopped = false;
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => (stopped = true));
log(`provisioner ${provisioner}: class ${className}, folders under ${root}`);
while (!stopped) {
  try {
    await provision();
    await reclaim();
  } catch (err) {
    log(`error: ${err instanceof Error ? err.message : String(err)}`);
  }
  await new Promise((r) => setTimeout(r, interval));
}
