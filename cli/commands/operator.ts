// `mailroute operator`: parses the configuration, builds the kube client, metrics and logger, runs the manager
// until SIGTERM/SIGINT (exit 0, the leader Lease is released) or lost leadership (exit 1, to be restarted).

import { KubeConfig } from '@kubernetes/client-node';
import { createLogger } from '../../lib/logger.ts';
import { parseOperatorConfig } from '../../operator/config.ts';
import { OperatorManager } from '../../operator/manager.ts';
import { createOperatorMetrics } from '../../operator/telemetry/metrics.ts';

export async function run(argv: string[]): Promise<number> {
  const parsed = parseOperatorConfig(argv, process.env);
  if (parsed.ok === 'help') {
    process.stdout.write(parsed.text);
    return 0;
  }
  if (!parsed.ok) {
    process.stderr.write(`mailroute operator: ${parsed.error}\n`);
    return 2;
  }
  const config = parsed.config;
  const logger = createLogger({
    level: config.logLevel,
    format: config.logFormat,
    base: { component: 'operator', identity: config.identity },
  });
  const kc = new KubeConfig();
  try {
    if (config.kubeconfig !== undefined) kc.loadFromFile(config.kubeconfig);
    else kc.loadFromCluster();
  } catch (err) {
    process.stderr.write(`mailroute operator: --kubeconfig: ${(err as Error).message}\n`);
    return 2;
  }
  if (config.kubeconfig === undefined && kc.getCurrentCluster()?.server.includes('undefined') === true) {
    process.stderr.write('mailroute operator: not in a cluster and no --kubeconfig / KUBECONFIG given\n');
    return 2;
  }
  const manager = new OperatorManager({ config, kubeconfig: kc, logger, metrics: createOperatorMetrics() });
  const onSignal = (sig: string): void => {
    logger.info({ signal: sig }, 'shutting down');
    void manager.stop('stopped');
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  try {
    await manager.start();
  } catch (err) {
    logger.error({ err: (err as Error).message }, 'operator failed to start');
    await manager.stop('stopped');
    return 1;
  }
  const http = manager.httpAddress();
  logger.info({ http, namespace: config.namespace, leaderElect: config.leaderElect }, 'operator started');
  const reason = await manager.done;
  return reason === 'lost-leadership' ? 1 : 0;
}
