// The chart as a user installs it, on a real node: helm install with default values and the locally built image,
// the spool on a real PersistentVolumeClaim (a hostPath volume, which ignores fsGroup), helm test, examples applied
// and Ready, and mail through the relay Service to SMTP servers on the host for Direct, Dual and Split.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { SmtpPeer } from '../support/smtp-peer.ts';
import { waitFor } from '../support/wait.ts';
import { HELM, IMAGE_REPOSITORY, PACKAGE_VERSION, kubectl, kubectlOk, run } from './harness.ts';
import { describeNode } from './suite.ts';
import {
  CHART,
  MAIL_NS,
  NAMESPACE,
  RELEASE,
  applyAndWaitReady,
  hostPeer,
  idsAt,
  installChart,
  modelManifests,
  relayPods,
  relayServiceIp,
  send,
  sendAccepted,
  uninstallChart,
  waitDelivered,
} from './support.ts';

describeNode('the chart on a real node', () => {
  let old: SmtpPeer;
  let neu: SmtpPeer;
  let relayIp: string;
  let installSeconds = 0;

  beforeAll(async () => {
    old = await hostPeer('old');
    // `new` knows alice@split.test only: Split sends the other recipients to `old`.
    neu = await hostPeer('new');
    installSeconds = await installChart();
    relayIp = await relayServiceIp();
  });

  afterAll(async () => {
    await uninstallChart();
    await old?.close();
    await neu?.close();
  });

  it('installs with default values: operator and relays Ready, spools on bound PVCs owned by the relay user', async () => {
    console.log(`[node] helm install -> every pod Ready: ${installSeconds.toFixed(1)} s`);
    expect(await relayPods()).toEqual([`${RELEASE}-mailroute-relay-0`, `${RELEASE}-mailroute-relay-1`]);
    const pvcs = JSON.parse(await kubectlOk(['-n', NAMESPACE, 'get', 'pvc', '-o', 'json'])) as {
      items: {
        metadata: { name: string };
        spec: { storageClassName?: string };
        status: { phase?: string };
      }[];
    };
    expect(pvcs.items.map((p) => [p.metadata.name, p.spec.storageClassName, p.status.phase]).sort()).toEqual([
      [`spool-${RELEASE}-mailroute-relay-0`, 'mailroute-node-hostpath', 'Bound'],
      [`spool-${RELEASE}-mailroute-relay-1`, 'mailroute-node-hostpath', 'Bound'],
    ]);
    // The relay runs as 1000 and wrote its queue folder on the volume (the init container gave it the folder).
    const id = await kubectlOk(['-n', NAMESPACE, 'exec', `${RELEASE}-mailroute-relay-0`, '-c', 'relay', '--', 'sh', '-c', 'id -u; stat -c %u:%a /var/spool/mailroute /var/spool/mailroute/queue']); // prettier-ignore
    expect(id.trim().split('\n')).toEqual(['1000', '1000:750', '1000:755']);
  });

  it('passes helm test (every relay /readyz through the headless peer Service, resolved by cluster DNS)', async () => {
    const r = await run(HELM, ['test', RELEASE, '-n', NAMESPACE, '--timeout', '120s', '--logs'], {
      timeoutMs: 150_000,
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Phase:\s+Succeeded/);
  });

  it('refuses to start on a root-owned volume without the init container, saying which value fixes it', async () => {
    // The relay alone on a hostPath folder owned by root, as the chart runs it without volumePermissions.
    const pod = `apiVersion: v1
kind: Pod
metadata: {name: spool-eacces, namespace: ${NAMESPACE}}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, runAsNonRoot: true}
  containers:
    - name: relay
      image: ${IMAGE_REPOSITORY}:${PACKAGE_VERSION}
      imagePullPolicy: Never
      args: [relay, --manifests=/app/examples/demo, --spool=/var/spool/mailroute, --listen=127.0.0.1:2525, --http=127.0.0.1:9090]
      volumeMounts: [{name: spool, mountPath: /var/spool/mailroute}]
  volumes:
    - name: spool
      hostPath: {path: /var/lib/mailroute-node/volumes/eacces-test, type: DirectoryOrCreate}
`;
    await kubectlOk(['apply', '-f', '-'], { input: pod });
    try {
      await waitFor(
        async () =>
          (await kubectl(['-n', NAMESPACE, 'get', 'pod', 'spool-eacces', '-o', 'jsonpath={.status.phase}']))
            .stdout === 'Failed',
        { timeoutMs: 60_000, intervalMs: 500, what: 'the relay to exit' },
      );
      const logs = await kubectlOk(['-n', NAMESPACE, 'logs', 'spool-eacces']);
      expect(logs).toContain('cannot write the spool folder /var/spool/mailroute');
      expect(logs).toContain('relay.spool.volumePermissions.enabled=true');
    } finally {
      await kubectl([
        '-n',
        NAMESPACE,
        'delete',
        'pod',
        'spool-eacces',
        '--grace-period=0',
        '--force',
        '--wait=false',
      ]);
    }
  });

  it('makes the examples Ready and carries mail through the relay Service for Direct, Dual and Split', async () => {
    await applyAndWaitReady(modelManifests({ old, new: neu }));
    expect(await kubectlOk(['-n', MAIL_NS, 'get', 'deliverypolicies', '-o', 'jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}'])).toBe('True True True'); // prettier-ignore
    await sendAccepted(relayIp, 'bob@direct.test', 'direct-1');
    await sendAccepted(relayIp, 'carol@dual.test', 'dual-1');
    await sendAccepted(relayIp, ['alice@split.test', 'zed@split.test'], 'split-1');
    await waitDelivered(neu, ['direct-1'], 'bob@direct.test');
    await waitDelivered(old, ['dual-1'], 'carol@dual.test');
    await waitDelivered(neu, ['dual-1'], 'carol@dual.test');
    await waitDelivered(neu, ['split-1'], 'alice@split.test');
    await waitDelivered(old, ['split-1'], 'zed@split.test');
    // Direct never touches `old`; Split sends each recipient to one server only.
    expect(idsAt(old, 'bob@direct.test').size).toBe(0);
    expect(idsAt(old, 'alice@split.test').size).toBe(0);
    expect(idsAt(neu, 'zed@split.test').size).toBe(0);
    // An address of no managed domain is refused, not relayed.
    expect((await send(relayIp, 'someone@elsewhere.example', 'open-relay')).code).toBe(554);
  });

  it('applies the NetworkPolicies the chart ships, and mail still flows under them', async () => {
    // The egress rules name the ports this node uses: the API server behind its Service (16443) and the host peers.
    const up = await run(HELM, [
      'upgrade', RELEASE, CHART, '-n', NAMESPACE, '--reuse-values', '--set', 'networkPolicy.enabled=true',
      '--set-json', `networkPolicy.smtpEgressPorts=[25,465,587,${old.port},${neu.port}]`,
      '--set-json', 'networkPolicy.apiServerPorts=[443,6443,16443]',
    ], { timeoutMs: 120_000 }); // prettier-ignore
    expect(up.code, up.stderr).toBe(0);
    const names = (await kubectlOk(['-n', NAMESPACE, 'get', 'networkpolicy', '-o', 'jsonpath={.items[*].metadata.name}'])).split(' ').sort(); // prettier-ignore
    expect(names.length).toBeGreaterThanOrEqual(2);
    // The bridge CNI does not enforce NetworkPolicy (Calico or Cilium would): this proves the objects are valid and
    // accepted by the API server, and that they do not get in the way of the paths the product needs.
    await sendAccepted(relayIp, 'bob@direct.test', 'netpol-1');
    await waitDelivered(neu, ['netpol-1'], 'bob@direct.test');
  });
});
