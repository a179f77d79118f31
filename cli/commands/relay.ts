// `mailroute relay`: parse flags + MAILROUTE_<FLAG> once (relay/config.ts), run until SIGTERM/SIGINT.
import { parseRelayConfig, relayUsage } from '../../relay/config.ts';

export async function run(argv: string[]): Promise<number> {
  const parsed = parseRelayConfig(argv, process.env);
  if (parsed.ok === 'help') {
    process.stdout.write(relayUsage());
    return 0;
  }
  if (!parsed.ok) {
    process.stderr.write(`mailroute relay: ${parsed.error}\n`);
    return 2;
  }
  // Before the first asynchronous fs call creates libuv's pool: 4 threads queue the spool's fsyncs (docs/perf.md).
  process.env.UV_THREADPOOL_SIZE ??= '16';
  const { runRelayProcess } = await import('../../relay/workers.ts');
  try {
    return await runRelayProcess(parsed.config);
  } catch (err) {
    process.stderr.write(`mailroute relay: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
