// The image that scripts/image.sh builds from the Dockerfile, run by the node's containerd as the chart runs it:
// its own user (uid 1000, not set by the pod), a read-only root filesystem, every capability dropped.
import { afterAll, expect, it } from 'vitest';
import { waitFor } from '../support/wait.ts';
import { IMAGE_REPOSITORY, PACKAGE_VERSION, kubectl, kubectlOk } from './harness.ts';
import { describeNode } from './suite.ts';

const NS = 'image-check';

function pod(name: string, command: string[]): string {
  return `apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: ${NS}}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  containers:
    - name: main
      image: ${IMAGE_REPOSITORY}:${PACKAGE_VERSION}
      imagePullPolicy: Never
      ${command.length > 0 ? `command: ${JSON.stringify(command)}` : 'args: ["--help"]'}
      securityContext:
        readOnlyRootFilesystem: true
        allowPrivilegeEscalation: false
        capabilities: {drop: [ALL]}
`;
}

async function runPod(
  name: string,
  command: string[] = [],
): Promise<{ phase: string; exitCode: number; logs: string }> {
  await kubectlOk(['apply', '-f', '-'], { input: pod(name, command) });
  const phase = await waitFor(
    async () => {
      const p = (await kubectl(['-n', NS, 'get', 'pod', name, '-o', 'jsonpath={.status.phase}'])).stdout;
      return p === 'Succeeded' || p === 'Failed' ? p : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 500, what: `pod ${name} to finish` },
  );
  const exitCode = Number(
    await kubectlOk([
      '-n',
      NS,
      'get',
      'pod',
      name,
      '-o',
      'jsonpath={.status.containerStatuses[0].state.terminated.exitCode}',
    ]),
  );
  return { phase, exitCode, logs: await kubectlOk(['-n', NS, 'logs', name]) };
}

describeNode('the mailroute image on a real node', () => {
  afterAll(async () => {
    await kubectl(['delete', 'namespace', NS, '--ignore-not-found', '--wait=false']);
  });

  it('runs `mailroute --help` as uid 1000 with a read-only root filesystem', async () => {
    await kubectl(['create', 'namespace', NS]);
    const help = await runPod('help');
    expect(help, help.logs).toMatchObject({ phase: 'Succeeded', exitCode: 0 });
    expect(help.logs).toMatch(/^usage: mailroute <command>/m);
    expect(help.logs).toMatch(/^ {2}relay +run the SMTP relay/m);
    // The same image and settings: who runs, and that the root filesystem refuses writes.
    const who = await runPod('whoami', [
      '/bin/sh',
      '-c',
      'id -u; id -g; touch /app/x 2>&1 || echo read-only',
    ]);
    expect(who.exitCode).toBe(0);
    expect(who.logs.trim().split('\n')).toEqual([
      '1000',
      '1000',
      expect.stringMatching(/Read-only file system/),
      'read-only',
    ]);
  });
});
