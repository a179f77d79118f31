// MAILROUTE_DNS_SERVERS: comma-separated DNS servers (IP or IP:PORT) for the process's own lookups. Applied once at
// start, before any command runs, to node:dns (the operator's MX lookups). The relay reads the same variable as
// --dns-servers and resolves every name through its own seam (relay/dns.ts: MX, A/AAAA of destinations, DSN routes,
// callouts, --peers). The test suites set it to a closed loopback port so no lookup ever leaves the machine.
import dns from 'node:dns';

export function applyDnsServers(env: NodeJS.ProcessEnv): string | undefined {
  const raw = env.MAILROUTE_DNS_SERVERS?.trim();
  if (raw === undefined || raw === '') return undefined;
  const servers = raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  try {
    dns.setServers(servers);
  } catch (err) {
    return `MAILROUTE_DNS_SERVERS: ${(err as Error).message} (got "${raw}")`;
  }
  return undefined;
}
