import { execFile } from 'node:child_process';
import { chmod, readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { makeRepository, startApp, versionedModel } from '../helpers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DOCKERFILE = path.join(ROOT, 'docker/Dockerfile');
const ENTRYPOINT = path.join(ROOT, 'docker/entrypoint.sh');

interface Instruction {
  keyword: string;
  /** Everything after the keyword, continuation lines joined. */
  args: string;
  line: number;
}

interface Stage {
  /** The base image, build arguments substituted. */
  from: string;
  name: string | undefined;
  instructions: Instruction[];
  /** Build arguments in scope at the end of the stage, with their defaults. */
  args: Map<string, string>;
}

/**
 * A Dockerfile as the builder reads it: comment lines dropped (also inside continuations), lines
 * ending in `\` joined to the next, each instruction's keyword upper-cased.
 */
function parseDockerfile(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let pending: { parts: string[]; line: number } | undefined;
  text.split('\n').forEach((raw, index) => {
    const line = raw.trimEnd();
    // Blank lines inside a continuation are skipped too (Docker warns about them, and goes on).
    if (/^\s*#/.test(line) || line.trim() === '') return;
    const continued = line.endsWith('\\');
    const part = continued ? line.slice(0, -1) : line;
    pending ??= { parts: [], line: index + 1 };
    pending.parts.push(part.trim());
    if (continued) return;
    const joined = pending.parts.filter((p) => p !== '').join(' ');
    const [keyword = '', ...rest] = joined.split(/\s+/);
    instructions.push({ keyword: keyword.toUpperCase(), args: rest.join(' '), line: pending.line });
    pending = undefined;
  });
  return instructions;
}

/** The instructions the builder substitutes variables in; RUN, CMD, … leave them to the shell. */
const SUBSTITUTED = new Set([
  'ADD',
  'COPY',
  'ENV',
  'EXPOSE',
  'FROM',
  'LABEL',
  'STOPSIGNAL',
  'USER',
  'VOLUME',
  'WORKDIR',
]);

/** `${NAME}`, `${NAME:-default}` and `$NAME` replaced from the build arguments in scope. */
function substitute(text: string, args: Map<string, string>): string {
  return text.replace(/\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)/g, (_match, braced, fallback, bare) => {
    const value = args.get(braced ?? bare);
    return value === undefined || value === '' ? (fallback ?? '') : value;
  });
}

/** `NAME=default` or `NAME` of an ARG instruction. */
function argOf(args: string): [string, string] {
  const [name = '', ...value] = args.split('=');
  return [name, value.join('=').replace(/^"(.*)"$/, '$1')];
}

/** The stages of a Dockerfile; ARGs before the first FROM serve the FROM lines, as in Docker. */
function stagesOf(instructions: Instruction[]): Stage[] {
  const global = new Map<string, string>();
  const stages: Stage[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') {
      const words = instruction.args.split(/\s+/).filter((word) => !word.startsWith('--'));
      const as = words.findIndex((word) => word.toUpperCase() === 'AS');
      stages.push({
        from: substitute(words[0] ?? '', global),
        name: as === -1 ? undefined : words[as + 1],
        instructions: [],
        args: new Map(),
      });
      continue;
    }
    const stage = stages.at(-1);
    if (stage === undefined) {
      if (instruction.keyword === 'ARG') global.set(...argOf(instruction.args));
      continue;
    }
    if (instruction.keyword === 'ARG') {
      const [name, value] = argOf(instruction.args);
      stage.args.set(name, value === '' ? (global.get(name) ?? '') : value);
    }
    const args = SUBSTITUTED.has(instruction.keyword) ? substitute(instruction.args, stage.args) : instruction.args;
    stage.instructions.push({ ...instruction, args });
  }
  return stages;
}

function all(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((instruction) => instruction.keyword === keyword);
}

/** `--name=value` flags and the remaining words of a COPY, HEALTHCHECK, … */
function flagsOf(args: string): { flags: Map<string, string>; rest: string } {
  const flags = new Map<string, string>();
  let rest = args.trim();
  for (let match = /^--([\w-]+)=(\S+)\s*/.exec(rest); match !== null; match = /^--([\w-]+)=(\S+)\s*/.exec(rest)) {
    flags.set(match[1] ?? '', match[2] ?? '');
    rest = rest.slice(match[0].length);
  }
  return { flags, rest };
}

/** A COPY's sources and destination, resolved against the stage's WORKDIR when relative. */
function copyOf(instruction: Instruction, workdir: string) {
  const { flags, rest } = flagsOf(instruction.args);
  const words = rest.startsWith('[') ? (JSON.parse(rest) as string[]) : rest.split(/\s+/);
  const destination = words.at(-1) ?? '';
  return {
    from: flags.get('from'),
    chown: flags.get('chown'),
    sources: words.slice(0, -1).map((source) => source.replace(/^\.\//, '').replace(/\/$/, '')),
    destination: path.posix.resolve(workdir, destination),
  };
}

function copiesOf(stage: Stage) {
  let workdir = '/';
  const copies: ReturnType<typeof copyOf>[] = [];
  for (const instruction of stage.instructions) {
    if (instruction.keyword === 'WORKDIR') workdir = path.posix.resolve(workdir, instruction.args);
    if (instruction.keyword === 'COPY') copies.push(copyOf(instruction, workdir));
  }
  return copies;
}

async function dockerfile() {
  const instructions = parseDockerfile(await readFile(DOCKERFILE, 'utf8'));
  const stages = stagesOf(instructions);
  const final = stages.at(-1);
  if (final === undefined) throw new Error('docker/Dockerfile has no FROM');
  return { instructions, stages, final };
}

/** The exec-form command of the final stage's HEALTHCHECK. */
async function healthcheckCommand(): Promise<string[]> {
  const { final } = await dockerfile();
  const [healthcheck] = all(final, 'HEALTHCHECK');
  const { rest } = flagsOf(healthcheck?.args ?? '');
  expect(rest).toMatch(/^CMD \[/);
  return JSON.parse(rest.slice('CMD'.length)) as string[];
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  pid: number | undefined;
}

function run(file: string, args: string[], options: { cwd?: string; env: NodeJS.ProcessEnv }): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { ...options, timeout: 10_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      resolve({ code, stdout, stderr, pid: child.pid });
    });
  });
}

describe('docker/Dockerfile', () => {
  it('parses continuation lines and comments as the builder does', () => {
    const parsed = parseDockerfile('FROM a AS b\n# note\nRUN one \\\n  # inside\n  two \\\n\n  three\ncmd ["x"]\n');
    expect(parsed.map(({ keyword, args }) => [keyword, args])).toEqual([
      ['FROM', 'a AS b'],
      ['RUN', 'one two three'],
      ['CMD', '["x"]'],
    ]);
  });

  it('builds in one stage and runs from a slim Node 20 stage with production dependencies only', async () => {
    const { stages, final } = await dockerfile();
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of stages) expect(stage.from).toMatch(/^[\w./-]+:[\w.-]+$/);
    expect(stages.map((stage) => stage.from)).not.toContainEqual(expect.stringMatching(/:latest$/));
    expect(final.from).toMatch(/^node:20[.\w-]*slim/);

    const build = stages.find((stage) => stage.name !== undefined && stage !== final);
    expect(all(build as Stage, 'RUN').map((i) => i.args)).toContainEqual(expect.stringContaining('npm run build'));

    const installs = all(final, 'RUN').filter((i) => /\bnpm (ci|install|i)\b/.test(i.args));
    expect(installs).toHaveLength(1);
    expect(installs[0]?.args).toMatch(/\bnpm ci\b[^&]*--omit=dev/);
    expect(all(final, 'RUN').map((i) => i.args)).not.toContainEqual(expect.stringContaining('npm run build'));
    expect(all(final, 'ENV').map((i) => i.args)).toContainEqual(expect.stringMatching(/\bNODE_ENV[= ]production\b/));
  });

  it('ships the compiled server from the build stage, the OpenAPI document it serves and the example models', async () => {
    const { final } = await dockerfile();
    const copies = copiesOf(final);
    const dist = copies.find((copy) => copy.sources.includes('/app/dist') || copy.sources.includes('dist'));
    expect(dist?.from).toBe('build');
    expect(dist?.destination).toBe('/app/dist');
    const models = copies.find((copy) => copy.from === undefined && copy.sources.includes('models'));
    expect(models?.destination).toBe('/app/models');
    // The built server reads openapi.yaml beside dist/ (src/plugins/docs.ts).
    expect(copies.find((copy) => copy.sources.includes('openapi.yaml'))?.destination).toBe('/app');
    // The server's defaults are relative to its working directory: ./models and dist/server.js.
    expect(all(final, 'WORKDIR').at(-1)?.args).toBe('/app');
  });

  it('runs as a non-root user that owns the example models (a compose volume seeded from them stays writable)', async () => {
    const { final } = await dockerfile();
    const user = all(final, 'USER').at(-1)?.args ?? '';
    expect(user).not.toBe('');
    const [uid = '', gid] = user.split(':');
    expect(['0', 'root']).not.toContain(uid);
    expect(['0', 'root']).not.toContain(gid);
    const models = copiesOf(final).find((copy) => copy.sources.includes('models'));
    expect(models?.chown?.split(':')[0]).toBe(uid);
    // The account exists, so tools that look the user up find a name.
    expect(all(final, 'RUN').map((i) => i.args)).toContainEqual(
      expect.stringContaining(`useradd --system --uid ${uid}`),
    );
  });

  it('starts through the entrypoint script in exec form, `serve` by default, on port 8080', async () => {
    const { final } = await dockerfile();
    const entrypoint = all(final, 'ENTRYPOINT').at(-1)?.args ?? '';
    expect(entrypoint.startsWith('[')).toBe(true);
    const command = JSON.parse(entrypoint) as string[];
    const script = copiesOf(final).find((copy) => copy.sources.includes('docker/entrypoint.sh'));
    expect(command).toEqual([script?.destination]);
    expect(JSON.parse(all(final, 'CMD').at(-1)?.args ?? 'null')).toEqual(['serve']);
    expect(all(final, 'EXPOSE').flatMap((i) => i.args.split(/\s+/))).toContain('8080');
  });

  it('tells SageMaker it honours SAGEMAKER_BIND_TO_PORT and serves multi-model endpoints', async () => {
    const { final } = await dockerfile();
    const labels = all(final, 'LABEL').map((i) => i.args);
    expect(labels).toContainEqual(
      expect.stringMatching(/(^|\s)com\.amazonaws\.sagemaker\.capabilities\.accept-bind-to-port="?true"?(\s|$)/),
    );
    expect(labels).toContainEqual(
      expect.stringMatching(/(^|\s)com\.amazonaws\.sagemaker\.capabilities\.multi-models="?true"?(\s|$)/),
    );
  });

  describe('the HEALTHCHECK', () => {
    async function probe(env: NodeJS.ProcessEnv): Promise<number | null> {
      const [program, ...args] = await healthcheckCommand();
      expect(program).toBe('node');
      return (await run(process.execPath, args, { env: { PATH: process.env.PATH, ...env } })).code;
    }

    it('passes when /ping answers 200 on PORT, else on SAGEMAKER_BIND_TO_PORT', async () => {
      const app = await startApp();
      await app.listen({ port: 0, host: '127.0.0.1' });
      const port = String((app.server.address() as AddressInfo).port);
      expect(await probe({ PORT: port })).toBe(0);
      expect(await probe({ SAGEMAKER_BIND_TO_PORT: port })).toBe(0);
      expect(await probe({ PORT: '', SAGEMAKER_BIND_TO_PORT: port })).toBe(0);
    });

    it('fails when /ping says not ready, or nothing listens', async () => {
      const paths: string[] = [];
      const server = createServer((request, response) => {
        paths.push(request.url ?? '');
        response.writeHead(503).end();
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const port = String((server.address() as AddressInfo).port);
      try {
        expect(await probe({ PORT: port })).toBe(1);
        expect(paths).toEqual(['/ping']);
      } finally {
        await new Promise((resolve) => server.close(resolve));
      }
      expect(await probe({ PORT: port })).toBe(1);
    });
  });
});

/**
 * Whether .dockerignore keeps a context path out: the last matching pattern decides (`!` keeps),
 * and a pattern matching a parent folder matches everything in it, as in Docker.
 */
function dockerignored(patterns: string[], file: string): boolean {
  const toRegExp = (pattern: string) =>
    new RegExp(
      `^${pattern
        .split(/(\*\*\/?|\*|\?)/)
        .map((part) =>
          part === '**/'
            ? '(?:.*/)?'
            : part === '**'
              ? '.*'
              : part === '*'
                ? '[^/]*'
                : part === '?'
                  ? '[^/]'
                  : part.replace(/[.+^${}()|[\]\\]/g, '\\$&'),
        )
        .join('')}$`,
    );
  const parents = file.split('/').map((_, index, parts) => parts.slice(0, index + 1).join('/'));
  let ignored = false;
  for (const raw of patterns) {
    const negated = raw.startsWith('!');
    const pattern = path.posix.normalize(raw.slice(negated ? 1 : 0).replace(/^\/+/, ''));
    if (parents.some((candidate) => toRegExp(pattern).test(candidate))) ignored = !negated;
  }
  return ignored;
}

describe('.dockerignore', () => {
  async function patterns(): Promise<string[]> {
    const text = await readFile(path.join(ROOT, '.dockerignore'), 'utf8');
    return text
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#'));
  }

  it('matches as Docker does', () => {
    expect(dockerignored(['node_modules'], 'node_modules/fastify/package.json')).toBe(true);
    expect(dockerignored(['**/node_modules'], 'src/node_modules/x.js')).toBe(true);
    expect(dockerignored(['*.log'], 'npm-debug.log')).toBe(true);
    expect(dockerignored(['*.log'], 'src/keep.log')).toBe(false);
    expect(dockerignored(['docker/*', '!docker/entrypoint.sh'], 'docker/entrypoint.sh')).toBe(false);
    expect(dockerignored(['docker/*', '!docker/entrypoint.sh'], 'docker/Dockerfile')).toBe(true);
  });

  it('keeps host installs, build output, tests and git history out of the build context', async () => {
    const ignore = await patterns();
    for (const file of ['node_modules/fastify/package.json', '.git/HEAD', 'dist/server.js', 'test/helpers.ts']) {
      expect(dockerignored(ignore, file), file).toBe(true);
    }
  });

  it('keeps in everything the Dockerfile copies from the context', async () => {
    const ignore = await patterns();
    const { stages } = await dockerfile();
    const sources = stages.flatMap((stage) => copiesOf(stage).filter((copy) => copy.from === undefined));
    const files = sources.flatMap((copy) => copy.sources);
    expect(files).toEqual(expect.arrayContaining(['package-lock.json', '.npmrc', 'src', 'models']));
    for (const file of files) expect(dockerignored(ignore, file), file).toBe(false);
    // and what lies inside the folders it copies
    for (const file of ['src/server.ts', 'models/pod-power-linear/1/model.onnx']) {
      expect(dockerignored(ignore, file), file).toBe(false);
    }
  });
});

describe('docker/entrypoint.sh', () => {
  /** Runs the script with `sh` in a fresh folder, a stub `node` (printing its PID, arguments and MODEL_REPOSITORY) first on PATH. */
  async function entrypoint(args: string[], env: NodeJS.ProcessEnv = {}) {
    const bin = await makeRepository({
      node: [
        '#!/bin/sh',
        'echo "pid=$$"',
        'echo "args=$*"',
        `echo "MODEL_REPOSITORY=$(printenv MODEL_REPOSITORY || echo '(unset)')"`,
        '',
      ].join('\n'),
    });
    await chmod(path.join(bin, 'node'), 0o755);
    const cwd = await makeRepository({});
    const result = await run('sh', [ENTRYPOINT, ...args], {
      cwd,
      env: {
        PATH: `${bin}:${process.env.PATH}`,
        // Nowhere, unless a test makes one: the host's own /opt/ml/model must not count.
        SAGEMAKER_MODEL_DIR: path.join(cwd, 'no-such-dir'),
        ...env,
      },
    });
    const printed = Object.fromEntries(
      result.stdout
        .split('\n')
        .filter((line) => line.includes('='))
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
    return { ...result, printed };
  }

  it.each([[[]], [['serve']]])(
    '%j execs `node dist/server.js` (node replaces the shell: PID 1 in a container)',
    async (args) => {
      const result = await entrypoint(args);
      expect(result.code).toBe(0);
      expect(result.printed.args).toBe('dist/server.js');
      expect(result.printed.pid).toBe(String(result.pid));
      expect(result.printed.MODEL_REPOSITORY).toBe('(unset)');
    },
  );

  it('refuses arguments after `serve`, naming the way to configure', async () => {
    const result = await entrypoint(['serve', '--port', '9000']);
    expect(result.code).toBe(64);
    expect(result.stderr).toMatch(/environment variables/);
    expect(result.printed.args).toBeUndefined();
  });

  it('runs any other command as given', async () => {
    const result = await entrypoint(['sh', '-c', 'echo "args=shell $0"', 'x']);
    expect(result.code).toBe(0);
    expect(result.printed.args).toBe('shell x');
  });

  it('serves SageMaker’s /opt/ml/model when it holds a model and MODEL_REPOSITORY is unset', async () => {
    const sagemaker = await makeRepository(versionedModel(1));
    expect((await entrypoint(['serve'], { SAGEMAKER_MODEL_DIR: sagemaker })).printed.MODEL_REPOSITORY).toBe(sagemaker);
    // An empty value counts as unset, as it does for the server.
    const blank = await entrypoint(['serve'], { SAGEMAKER_MODEL_DIR: sagemaker, MODEL_REPOSITORY: '' });
    expect(blank.printed.MODEL_REPOSITORY).toBe(sagemaker);
  });

  it('leaves the repository to the server in SageMaker multi-model mode (it defaults to /opt/ml/models)', async () => {
    const sagemaker = await makeRepository(versionedModel(1));
    const multi = await entrypoint(['serve'], { SAGEMAKER_MODEL_DIR: sagemaker, SAGEMAKER_MULTI_MODEL: 'true' });
    expect(multi.printed.MODEL_REPOSITORY).toBe('(unset)');
  });

  it('keeps the shipped models when /opt/ml/model is empty, and MODEL_REPOSITORY when it is set', async () => {
    const empty = await makeRepository({});
    expect((await entrypoint([], { SAGEMAKER_MODEL_DIR: empty })).printed.MODEL_REPOSITORY).toBe('(unset)');
    const sagemaker = await makeRepository(versionedModel(1));
    const chosen = await entrypoint([], { SAGEMAKER_MODEL_DIR: sagemaker, MODEL_REPOSITORY: '/srv/models' });
    expect(chosen.printed.MODEL_REPOSITORY).toBe('/srv/models');
  });
});
