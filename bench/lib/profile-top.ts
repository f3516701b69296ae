/**
 * The functions with the most self time in V8 .cpuprofile files (node --cpu-prof), summed by
 * function, file and line, for each file given (one per thread), with idle time left out of the
 * shares.
 *
 * Run: `npx tsx bench/lib/profile-top.ts <file.cpuprofile | dir>… [--top N]`
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTime {
  name: string;
  where: string;
  ms: number;
}

export function selfTimes(profile: Profile): Map<string, SelfTime> {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const totals = new Map<string, SelfTime>();
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i] ?? -1);
    if (node === undefined) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const name = functionName === '' ? '(anonymous)' : functionName;
    const file = url === '' ? '' : url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, '~/');
    const where = file === '' ? '' : `${path.relative(process.cwd(), file) || file}:${lineNumber + 1}`;
    const key = `${name} ${where}`;
    const entry = totals.get(key) ?? { name, where, ms: 0 };
    // timeDeltas[i] is the time before sample i; attributing it to sample i is what DevTools does.
    entry.ms += (profile.timeDeltas[i] ?? 0) / 1000;
    totals.set(key, entry);
  }
  return totals;
}

function files(args: string[]): string[] {
  return args.flatMap((arg) =>
    statSync(arg).isDirectory()
      ? readdirSync(arg)
          .filter((f) => f.endsWith('.cpuprofile'))
          .map((f) => path.join(arg, f))
      : [arg],
  );
}

function main(): void {
  const args = process.argv.slice(2);
  const topAt = args.indexOf('--top');
  const top = topAt === -1 ? 10 : Number(args[topAt + 1]);
  const inputs = topAt === -1 ? args : args.filter((_, i) => i !== topAt && i !== topAt + 1);
  for (const file of files(inputs)) {
    const totals = [...selfTimes(JSON.parse(readFileSync(file, 'utf8')) as Profile).values()];
    const all = totals.reduce((sum, t) => sum + t.ms, 0);
    const idle = totals.filter((t) => t.name === '(idle)').reduce((sum, t) => sum + t.ms, 0);
    const busy = all - idle;
    process.stdout.write(
      `${path.basename(file)}: ${(all / 1000).toFixed(1)} s sampled, ${(busy / 1000).toFixed(1)} s busy (not idle)\n`,
    );
    const sorted = totals.filter((t) => t.name !== '(idle)').sort((a, b) => b.ms - a.ms);
    for (const t of sorted.slice(0, top)) {
      process.stdout.write(
        `  ${t.ms.toFixed(0).padStart(7)} ms ${((100 * t.ms) / busy).toFixed(1).padStart(5)}%  ${t.name}  ${t.where}\n`,
      );
    }
  }
}

main();
