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
  const { runRelay } = await import('../../relay/relay.ts');
  let handle;
  try {
    handle = await runRelay(parsed.config, { handleSignals: true });
  } catch (err) {
    process.stderr.write(`mailroute relay: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  await handle.closed;
  return 0;
}
