import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';

/** Linux reports /proc CPU times in USER_HZ, 100 per second on every common platform. */
const TICKS_PER_SECOND = 100;

export interface Machine {
  cores: number;
  cpuModel: string;
  node: string;
  platform: string;
}

export function machine(): Machine {
  return {
    cores: availableParallelism(),
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
  };
}

export function loadAverage(): [number, number, number] {
  const [one = 0, five = 0, fifteen = 0] = loadavg();
  return [round2(one), round2(five), round2(fifteen)];
}

/** Busy: the 1-minute load average is above the number of cores. */
export function busy(load: readonly number[]): boolean {
  return (load[0] ?? 0) > availableParallelism();
}

interface CpuSnapshot {
  at: number;
  /** Busy CPU seconds of the whole machine since boot; undefined off Linux. */
  machineBusy: number | undefined;
  /** CPU seconds of this process and of the given server processes. */
  own: number;
}

/** CPU time of the machine and of the bench's own processes (this one and the servers' pids). */
export function cpuSnapshot(pids: readonly (number | undefined)[]): CpuSnapshot {
  const { user, system } = process.cpuUsage();
  let own = (user + system) / 1e6;
  for (const pid of pids) own += processCpuSeconds(pid) ?? 0;
  return { at: performance.now(), machineBusy: machineBusySeconds(), own };
}

/**
 * How many cores, on average between two snapshots, went to processes other than the bench and
 * its servers: what competes with the measurement. Undefined where /proc cannot be read.
 */
export function otherCores(from: CpuSnapshot, to: CpuSnapshot): number | undefined {
  if (from.machineBusy === undefined || to.machineBusy === undefined) return undefined;
  const seconds = (to.at - from.at) / 1000;
  if (seconds <= 0) return undefined;
  const others = to.machineBusy - from.machineBusy - (to.own - from.own);
  return round2(Math.max(0, others) / seconds);
}

function machineBusySeconds(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    // cpu user nice system idle iowait irq softirq steal guest guest_nice (guest time is in user)
    const [, user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = line
      .trim()
      .split(/\s+/)
      .map(Number);
    return (user + nice + system + irq + softirq + steal) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

function processCpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // After the command name (in parentheses, may hold spaces): state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}
