// The `mailroute` command: argument dispatch only. Each subcommand lives in cli/commands/<name>.ts and exports
// `run(argv: string[]): Promise<number>` (the exit code). Imports are lazy so `mailroute check` never loads smtp-server.

import { applyDnsServers } from './dns.ts';

type Command = { summary: string; load: () => Promise<{ run: (argv: string[]) => Promise<number> }> };

const commands: Record<string, Command> = {
  check: { summary: 'validate manifests offline', load: () => import('./commands/check.ts') },
  render: { summary: 'print the compiled RoutingTable as JSON', load: () => import('./commands/render.ts') },
  route: { summary: 'explain the delivery plan of one recipient', load: () => import('./commands/route.ts') },
  diff: {
    summary: 'what a routing change does: two manifest sets, or the cluster and a folder',
    load: () => import('./commands/diff.ts'),
  },
  relay: { summary: 'run the SMTP relay', load: () => import('./commands/relay.ts') },
  queue: { summary: "inspect and drive a relay's queue", load: () => import('./commands/queue.ts') },
  operator: { summary: 'run the Kubernetes operator', load: () => import('./commands/operator.ts') },
  preflight: {
    summary:
      "probe every server of the manifests' MailDomains from here (connect, TLS, AUTH, --probe ADDRESS)",
    load: () => import('./commands/preflight.ts'),
  },
  probe: {
    summary: 'GET a URL on one or every address of a host; exit 1 unless all answer 2xx',
    load: () => import('./commands/probe.ts'),
  },
  demo: {
    summary: 'run a relay with two local destination servers',
    load: () => import('./commands/demo.ts'),
  },
};

function usage(): string {
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(10)}${c.summary}`);
  return `usage: mailroute <command> [flags]\n\ncommands:\n${lines.join('\n')}\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (command === undefined) {
    process.stderr.write(`mailroute: unknown command "${name}"\n${usage()}`);
    return 2;
  }
  const dnsError = applyDnsServers(process.env);
  if (dnsError !== undefined) {
    process.stderr.write(`mailroute: ${dnsError}\n`);
    return 2;
  }
  const mod = await command.load();
  return mod.run(rest);
}
